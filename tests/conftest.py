"""Shared fixtures (helpers that tests import live in support.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import support  # noqa: E402, F401  (sets up the test environment: data folder, caches, fast mode)
from aecourse.config import Config  # noqa: E402


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """A fast CPU config whose caches live in a temporary folder."""
    return Config(seed=0, device="cpu", epochs=2, batch_size=64, n_train=512, n_test=256,
                  data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", fast=False)


@pytest.fixture(scope="session")
def small_data():
    """512 training / 256 held-out images: real MNIST when present, else the embedded stand-in."""
    from aecourse.data import FallbackDataWarning, load_mnist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackDataWarning)
        return load_mnist(n_train=512, n_test=256, download=False, device="cpu")
