"""Shared fixtures. The real MNIST files in ``../shared/data/mnist`` are used when they exist."""

from __future__ import annotations

import gzip
import os
import struct
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from aecourse import _paths  # noqa: E402
from aecourse.config import Config  # noqa: E402

_paths.configure_for_tests()  # also done by solutions/conftest.py for the notebooks
MNIST_DIR = Path(os.environ[_paths.MNIST_DIR_ENV]) if os.environ.get(_paths.MNIST_DIR_ENV) else None

needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason="no MNIST folder ($AECOURSE_MNIST_DIR or ../shared/data/mnist)")


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file, independently of aecourse's reader."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


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
