"""Where things live on disk. Standard library only: the bootstrap imports it before torch exists."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

MNIST_DIR_ENV = "AECOURSE_MNIST_DIR"  # a folder holding the raw MNIST IDX files
FASHION_DIR_ENV = "AECOURSE_FASHION_MNIST_DIR"  # the same for Fashion-MNIST
DATA_DIR_ENV = "AECOURSE_DATA_DIR"  # torchvision's download cache
CACHE_DIR_ENV = "AECOURSE_CACHE_DIR"  # trained-model checkpoints


def repo_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "aecourse").is_dir() else None


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/aecourse`` (``~/.cache/aecourse`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aecourse"


def default_data_dir() -> Path:
    """Where downloaded datasets are kept: ``$AECOURSE_DATA_DIR`` or the user cache."""
    return Path(os.environ.get(DATA_DIR_ENV) or user_cache() / "data")


def default_cache_dir() -> Path:
    """Where trained checkpoints are kept: ``$AECOURSE_CACHE_DIR`` or the user cache."""
    return Path(os.environ.get(CACHE_DIR_ENV) or user_cache() / "checkpoints")


def sibling_mnist_dir() -> Path | None:
    """``../shared/data/mnist`` beside the checkout, if it holds MNIST files (offline machines)."""
    root = repo_root()
    if root is None:
        return None
    candidate = root.parent / "shared" / "data" / "mnist"
    return candidate if any(candidate.glob("*-idx?-ubyte*")) else None


def use_sibling_mnist(announce: bool = True) -> Path | None:
    """Point ``$AECOURSE_MNIST_DIR`` at the sibling MNIST folder unless it is already set."""
    if os.environ.get(MNIST_DIR_ENV):
        return Path(os.environ[MNIST_DIR_ENV])
    found = sibling_mnist_dir()
    if found is not None:
        os.environ[MNIST_DIR_ENV] = str(found)
        if announce:
            print(f"aecourse: using the MNIST files in {found} ({MNIST_DIR_ENV})")
    return found


def configure_for_tests() -> None:
    """What every test run and every notebook it executes needs, set once before anything starts.

    The sibling MNIST folder when there is one; downloads and checkpoints in a fresh temporary
    folder (never the user's cache); notebooks in fast mode unless AECOURSE_FAST says otherwise.
    """
    use_sibling_mnist(announce=False)
    if not os.environ.get("AECOURSE_TEST_CACHE"):
        os.environ["AECOURSE_TEST_CACHE"] = tempfile.mkdtemp(prefix="aecourse-tests-")
    cache = Path(os.environ["AECOURSE_TEST_CACHE"])
    os.environ.setdefault(DATA_DIR_ENV, str(cache / "data"))
    os.environ.setdefault(CACHE_DIR_ENV, str(cache / "checkpoints"))
    os.environ.setdefault("AECOURSE_FAST", "1")
