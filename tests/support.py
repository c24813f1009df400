"""Helpers the tests import, and the environment every test run sets up (``configure_environment``)."""

from __future__ import annotations

import atexit
import functools
import gzip
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from aecourse import _paths

ROOT = _paths.repo_root()
# Where this repository's maintainers keep the real MNIST files on machines without internet:
# a folder ``shared/data/mnist`` beside the clone. Used only when $AECOURSE_MNIST_DIR is not set.
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist" if ROOT is not None else None


def configure_environment() -> None:
    """What every test run and every notebook it executes needs, set once before anything starts.

    The MNIST folder (``$AECOURSE_MNIST_DIR``, else the shared folder beside the clone when it holds
    MNIST files); downloads and checkpoints in a fresh temporary folder (never the user's cache);
    notebooks in fast mode unless ``$AECOURSE_FAST`` says otherwise, and with strict checks (a failed
    exercise fails its cell, as under nbgrader).
    """
    if not os.environ.get(_paths.MNIST_DIR_ENV) and SHARED_MNIST is not None and any(SHARED_MNIST.glob("*-idx?-ubyte*")):
        os.environ[_paths.MNIST_DIR_ENV] = str(SHARED_MNIST)
    if not os.environ.get("AECOURSE_TEST_CACHE"):
        os.environ["AECOURSE_TEST_CACHE"] = tempfile.mkdtemp(prefix="aecourse-tests-")
        atexit.register(shutil.rmtree, os.environ["AECOURSE_TEST_CACHE"], ignore_errors=True)  # ours: gone at the end
    cache = Path(os.environ["AECOURSE_TEST_CACHE"])
    os.environ.setdefault(_paths.DATA_DIR_ENV, str(cache / "data"))
    os.environ.setdefault(_paths.CACHE_DIR_ENV, str(cache / "checkpoints"))
    os.environ.setdefault("AECOURSE_FAST", "1")
    os.environ.setdefault("AECOURSE_CHECKS", "strict")  # a failing test cell fails the notebook under nbval


configure_environment()  # before any test module reads it (conftest.py imports this module first)
MNIST_DIR = Path(os.environ[_paths.MNIST_DIR_ENV]) if os.environ.get(_paths.MNIST_DIR_ENV) else None
needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason="no MNIST folder ($AECOURSE_MNIST_DIR)")


@functools.cache
def sandbox_problem() -> str:
    """Why the grading sandbox cannot run on this machine ("" when it can)."""
    from aecourse.classroom.sandbox import SandboxError, SandboxSpec, check_sandbox

    try:
        check_sandbox(SandboxSpec())
    except SandboxError as err:
        return str(err)
    return ""


def make_course(dest: Path):
    """A copy of this checkout's course (solutions/, lessons/, nbgrader_config.py) in ``dest``."""
    from aecourse.classroom.course import Course

    return Course(ROOT).copy_to(dest)


def code_cell(source: str):
    """A cell a student added."""
    import nbformat

    return nbformat.v4.new_code_cell(source)


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file, independently of aecourse's reader."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path
