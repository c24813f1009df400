import math

from aecourse import bench


def test_quality_benchmark_runs_end_to_end_in_fast_mode(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AECOURSE_CACHE_DIR", str(tmp_path / "cache"))
    figures = bench.quality(fast=True, out=tmp_path)
    out = capsys.readouterr().out
    for row in ("held-out MSE per pixel", "-ELBO, nats/image", "5-NN accuracy on CAE codes", "training time"):
        assert row in out
    for key in ("pca_mse", "cae_mse", "vae_nelbo", "vae_kl", "knn_cae", "knn_vae", "knn_pixels"):
        assert math.isfinite(figures[key])
    assert figures["vae_nelbo"] > figures["vae_recon"] > 0 and figures["vae_kl"] >= 0
    assert 0.1 < figures["knn_pixels"] <= 1.0
    for name in ("quality_reconstructions.png", "quality_vae_samples.png", "quality_vae_curves.png"):
        assert (tmp_path / name).stat().st_size > 5_000
