import math

import pytest

from aecourse import bench


def test_quality_benchmark_runs_end_to_end_in_fast_mode(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AECOURSE_CACHE_DIR", str(tmp_path / "cache"))
    figures = bench.quality(fast=True, out=tmp_path)
    out = capsys.readouterr().out
    for row in ("held-out MSE per pixel", "-ELBO, nats/image", "5-NN accuracy on CAE codes", "training time"):
        assert row in out
    assert "deeper VAE (latent 32" in out and "training time (s): CAE / VAE / deeper VAE" in out
    for key in ("pca_mse", "cae_mse", "vae_nelbo", "vae_kl", "deep_vae_nelbo", "knn_cae", "knn_vae", "knn_deep_vae",
                "knn_pixels", "cae_seconds", "vae_seconds", "deep_vae_seconds"):
        assert math.isfinite(figures[key])
    for vae in ("vae", "deep_vae"):
        assert figures[f"{vae}_nelbo"] == pytest.approx(figures[f"{vae}_recon"] + figures[f"{vae}_kl"], rel=1e-5)
        assert figures[f"{vae}_recon"] > 0 and figures[f"{vae}_kl"] >= 0
    assert 0.1 < figures["knn_pixels"] <= 1.0
    for name in ("quality_reconstructions.png", "quality_vae_samples.png", "quality_deep_vae_samples.png",
                 "quality_vae_curves.png"):
        assert (tmp_path / name).stat().st_size > 5_000


def _lesson_training_spec(lesson: str, name: str, monkeypatch) -> str:
    """The cache key of the model ``name`` as lesson ``lesson`` trains it in full mode.

    Runs the lesson's set-up cell, then evaluates the arguments of its ``load_or_train("name", ...)``
    call (in a code cell, or in a ```python block of a markdown cell) without training anything.
    """
    import ast
    import re

    import nbformat

    from aecourse import _paths
    from aecourse.training import cache_key

    monkeypatch.setenv("AECOURSE_FAST", "0")
    nb = nbformat.read(_paths.repo_root() / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = next(src for src in code if "load_mnist(cfg)" in src)
    code += [block for c in nb.cells if c.cell_type == "markdown"
             for block in re.findall(r"```python\n(.*?)```", c.source, re.S)]
    namespace: dict = {}
    exec(compile(setup, f"{lesson} set-up cell", "exec"), namespace)
    for tree in map(ast.parse, (src for src in code if f'"{name}"' in src and "load_or_train" in src)):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "load_or_train" \
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == name:
                def value(expr: ast.expr):
                    return eval(compile(ast.Expression(expr), lesson, "eval"), namespace)

                make, data, cfg, objective = map(value, node.args[1:5])
                epochs = next((value(k.value) for k in node.keywords if k.arg == "epochs"), cfg.epochs)
                return cache_key(make(), data, cfg, objective, epochs)
    raise AssertionError(f"{lesson} does not train {name!r} with load_or_train")


@pytest.mark.parametrize("model, lesson, name", [
    ("cae", "02_convolutional_autoencoders", "lesson2-cae-32"),
    ("vae", "04_variational_autoencoders", "lesson4-vae-16"),
    ("deep_vae", "04_variational_autoencoders", "lesson4-vae-deep"),  # the snippet lesson 4 offers
])
def test_lessons_train_the_benchmarked_models_exactly_as_the_benchmark(model, lesson, name, monkeypatch):
    from aecourse.data import load_mnist
    from aecourse.training import cache_key

    lesson_key = _lesson_training_spec(lesson, name, monkeypatch)
    spec, cfg = bench.MODELS[model], bench.benchmark_config(model, seed=0, fast=False)
    assert lesson_key == cache_key(spec.make(), load_mnist(cfg), cfg, spec.objective, cfg.epochs)
