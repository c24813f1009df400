"""Every benchmark runs end to end in its fast mode and prints its table."""

import importlib
import math
import re

import pytest
import torch

from aecourse import recipes
from aecourse.bench import quality, throughput
from support import needs_mnist

pytestmark = pytest.mark.slow  # each trains models or embeds codes for tens of seconds


def test_quality_benchmark_runs_end_to_end_in_fast_mode(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AECOURSE_CACHE_DIR", str(tmp_path / "cache"))
    figures = quality.run(fast=True, out=tmp_path)
    out = capsys.readouterr().out
    for row in ("held-out MSE per pixel", "-ELBO, nats/image", "5-NN accuracy on CAE codes", "training time"):
        assert row in out
    assert "deeper VAE (latent 32" in out and "training time (s): CAE / VAE / deeper VAE" in out
    for key in ("pca_mse", "cae_mse", "vae_nelbo", "vae_kl", "deep_vae_nelbo", "knn_cae", "knn_vae", "knn_deep_vae",
                "knn_pixels", "cae_seconds", "vae_seconds", "deep_vae_seconds", "vae_iw_nll", "deep_vae_iw_nll"):
        assert math.isfinite(figures[key])
    assert "importance-weighted NLL, k = 10, first 50 held-out images" in out and "Burda et al., 2016" in out
    for vae in ("vae", "deep_vae"):  # the bound with k = 10 is tighter than the ELBO (k = 1) of the same images
        assert figures[f"{vae}_iw_nll"] < figures[f"{vae}_iw_nelbo"]
    for vae in ("vae", "deep_vae"):
        assert figures[f"{vae}_nelbo"] == pytest.approx(figures[f"{vae}_recon"] + figures[f"{vae}_kl"], rel=1e-5)
        assert figures[f"{vae}_recon"] > 0 and figures[f"{vae}_kl"] >= 0
    assert 0.1 < figures["knn_pixels"] <= 1.0
    for name in ("quality_reconstructions.png", "quality_vae_samples.png", "quality_deep_vae_samples.png",
                 "quality_vae_curves.png"):
        assert (tmp_path / name).stat().st_size > 5_000


def test_quality_scores_the_lessons_recipes():
    assert quality.MODELS == {"cae": recipes.CAE, "vae": recipes.VAE, "deep_vae": recipes.DEEP_VAE}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_throughput_benchmark_prints_both_pipelines_side_by_side(precision, monkeypatch, capsys):
    monkeypatch.setenv("AECOURSE_PRECISION", precision)
    rows = throughput.run(repeats=1, fast=True)
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == ["tutorial CAE (no bottleneck)", "tutorial dense VAE (pytorch/examples)",
                                          "course ConvAE(32)", "course ConvVAE(16)"]
    for r in rows:
        assert r["tutorial"] > 0 and r["course"] > 0
        assert r["ratio"] == pytest.approx(r["course"] / r["tutorial"])
        assert f"{r['ratio']:.2f}x" in out
    # in bf16 the float32 loop is timed beside it, so the table shows what each part gives
    assert all(("fp32" in r) == (precision == "bf16") for r in rows)
    assert "course, float32 (img/s)" in out
    assert ("course, bfloat16 autocast (img/s)" in out) == (precision == "bf16")
    assert f"course loop precision: {'bfloat16 autocast' if precision == 'bf16' else 'float32'}" in out
    # and, for the models with transposed convolutions, fit with autocast's own weight and bias gradients for them
    assert [("autocast" in r) for r in rows] == [precision == "bf16", False, precision == "bf16", precision == "bf16"]
    assert ("course, bfloat16 autocast alone (img/s)" in out) == (precision == "bf16")
    # then evaluation: the CPU's default images per pass against 1,000 (NCHW weights), then the default
    # (NHWC weights for the pass), a row per course model
    assert "Evaluation (training.evaluate) on cpu" in out
    assert "| 1,000 per pass, NCHW weights (img/s) | 250 per pass, NCHW (img/s) | ratio | 250 per pass, NHWC" in out
    for model in (r"ConvAE\(32\)", r"ConvVAE\(16\)"):
        assert re.search(rf"\| {model} \| [\d,]+ \| [\d,]+ \| \d+\.\d\dx \| [\d,]+ \| \d+\.\d\dx \| \d+\.\d\dx \|", out)
    assert ("(same: no transposed convolution)" in out) == (precision == "bf16")
    for r in rows:
        if "autocast" in r:
            assert f"{r['model']} {r['course'] / r['autocast']:.2f}x" in out


@pytest.mark.parametrize("name", ["tsne", "widgets"])
def test_tsne_and_widget_benchmarks_print_their_tables_in_fast_mode(name, capsys):
    from aecourse import bench

    args = bench.build_parser().parse_args([name, "--fast", "--repeats", "1"])
    importlib.import_module(f"aecourse.bench.{name}").main(args)
    out = capsys.readouterr().out
    assert {"tsne": "speed-up", "widgets": "| explorer | median (ms) |"}[name] in out


def test_shifted_moves_each_image_by_its_own_offset_with_black_at_the_edges():
    from aecourse.bench.standin import shifted

    images = torch.zeros(2, 1, 28, 28)
    images[:, 0, 10, 12] = 1.0
    moved = shifted(images, torch.tensor([2, -1]), torch.tensor([0, 2]))  # (dx, dy) per image
    assert moved[0, 0, 10, 14] == 1 and moved[1, 0, 12, 11] == 1 and moved.sum() == 2
    edge = torch.zeros(1, 1, 28, 28)
    edge[0, 0, :, 0] = 1.0  # a line on the left edge leaves the picture when moved left
    assert shifted(edge, torch.tensor([-1]), torch.tensor([0])).sum() == 0


def test_standin_keeps_the_held_out_images_apart_and_loads_through_the_idx_path(tmp_path, monkeypatch):
    from aecourse.bench import standin
    from aecourse.data import DataError, load_idx_folder, load_mnist, write_idx

    g = torch.Generator().manual_seed(0)
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    images = (torch.rand(100, 28, 28, generator=g) * 255).to(torch.uint8).numpy()
    write_idx(test_only / "t10k-images-idx3-ubyte", images)
    write_idx(test_only / "t10k-labels-idx1-ubyte", (torch.arange(100) % 10).to(torch.uint8).numpy())
    split = load_idx_folder(test_only)  # 80 train / 20 held-out
    folder = standin.build(tmp_path / "standin", test_only, n_train=500)
    monkeypatch.setenv("AECOURSE_MNIST_DIR", str(folder))
    ds = load_mnist(device="cpu")
    assert len(ds.train_x) == 500 and torch.equal(ds.test_x, split.test_x) and torch.equal(ds.test_y, split.test_y)
    assert torch.equal(ds.train_x[:80], split.train_x) and "500-image stand-in for full MNIST" in ds.source
    for copy, label in zip(ds.train_x[80:90], ds.train_y[80:90]):  # each copy: a training image, shifted
        sources = [i for i in range(80) if split.train_y[i] == label and any(torch.equal(
            standin.shifted(split.train_x[i:i + 1], torch.tensor([dx]), torch.tensor([dy]))[0], copy)
            for dx in range(-2, 3) for dy in range(-2, 3) if (dx, dy) != (0, 0))]
        assert sources
    with pytest.raises(DataError, match="official training split already"):
        standin.build(tmp_path / "again", folder)
    with pytest.raises(ValueError, match="at least the 80 images"):
        standin.build(tmp_path / "small", test_only, n_train=50)


def test_recipes_give_a_larger_training_set_the_same_budget_of_images():
    from aecourse.config import Config

    full = Config(fast=False)
    assert recipes.VAE.steps(8_000, full) == recipes.VAE.steps(60_000, full) == 40 * 125  # 320,000 images
    assert recipes.NO_BOTTLENECK.steps(60_000, full) == 3 * 125  # 24,000 images: less than one pass of 60,000


def test_gpu_bench_says_plainly_that_it_measures_nothing_without_a_gpu(capsys, monkeypatch):
    from aecourse.bench import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.run(fast=True) == {}
    assert "No CUDA GPU on this machine, so nothing is measured" in capsys.readouterr().out


@needs_mnist  # it builds the stand-in from MNIST's test set
def test_datasize_bench_trains_one_budget_on_each_training_set_and_scores_three_ways(capsys, monkeypatch, tmp_path):
    from aecourse.bench import datasize
    from aecourse.config import DEVICE_BATCH, REFERENCE_BATCH

    monkeypatch.setenv("AECOURSE_CACHE_DIR", str(tmp_path))
    rows = datasize.run(fast=True)
    out = capsys.readouterr().out
    assert [(r["n_train"], r["batch_size"]) for r in rows] == [
        (200, REFERENCE_BATCH), (400, REFERENCE_BATCH), (400, DEVICE_BATCH["cuda"]),
        (16_000, REFERENCE_BATCH), (16_000, DEVICE_BATCH["cuda"])]
    for r in rows:
        for key in ("held_out_loss", "shifted_loss", "train_loss"):
            assert math.isfinite(r[key]) and r[key] > 0
            assert f"{r[key]:.1f}" in out
        assert r["held_out_loss"] == pytest.approx(r["held_out_recon"] + r["held_out_kl"], rel=1e-5)
    assert "16,000-image stand-in (8,000 + shifted copies)" in out and "| images a step |" in out


def test_the_shifted_held_out_digits_move_as_the_standins_copies_do():
    from aecourse.bench import datasize, standin

    images = torch.zeros(300, 1, 28, 28)
    images[:, 0, 14, 14] = 1.0  # one lit pixel in the middle of each
    moved = datasize.shifted_like_standin(images, seed=1)
    where = moved[:, 0].flatten(1).argmax(1)
    dy, dx = where // 28 - 14, where % 28 - 14
    assert moved.sum() == 300 and not ((dx == 0) & (dy == 0)).any()
    assert dx.abs().max() == dy.abs().max() == standin.SHIFT
    assert torch.equal(moved, datasize.shifted_like_standin(images, seed=1))


def test_gpu_bench_times_a_step_at_both_batch_sizes_on_any_device():
    from aecourse.bench import gpu
    from aecourse.config import DEVICE_BATCH, REFERENCE_BATCH

    seconds = gpu.step_seconds("cpu", steps=4, fast=True)
    assert list(seconds) == [REFERENCE_BATCH, DEVICE_BATCH["cuda"]]
    assert all(0 < s < 10 for s in seconds.values())
