"""Where things live on disk. Standard library only: the bootstrap imports it before torch exists."""

from __future__ import annotations

import os
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
