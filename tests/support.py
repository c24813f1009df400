"""Helpers the tests import. The real MNIST files in ``../shared/data/mnist`` are used when they exist."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from aecourse import _paths

# conftest.py has pointed $AECOURSE_MNIST_DIR at ../shared/data/mnist when it exists
MNIST_DIR = Path(os.environ[_paths.MNIST_DIR_ENV]) if os.environ.get(_paths.MNIST_DIR_ENV) else None

needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason="no MNIST folder ($AECOURSE_MNIST_DIR or ../shared/data/mnist)")


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file, independently of aecourse's reader."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path
