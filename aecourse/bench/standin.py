"""A 60,000-image stand-in for full MNIST, built at benchmark time from the 8,000 training images of the
fixed split of MNIST's test set, for figures that depend on the size of the training set.

Full MNIST trains on 60,000 images; a machine that holds only the 10,000-image test split (split
8,000 / 2,000 by ``aecourse.data``) can still time and score the lessons at that size: the stand-in's
training set is the 8,000 training images and 52,000 copies of them, each shifted by up to
``SHIFT`` pixels in x and y (never by zero in both); its held-out set is the same 2,000 held-out images,
none of which, shifted or not, is among the training images. The folder holds raw IDX files under
MNIST's names, loaded through the same path as real MNIST (``$AECOURSE_MNIST_DIR``), and a
``SOURCE.txt`` that ``aecourse.data`` reports as the data's source. Nothing of it is committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from aecourse import _paths
from aecourse.data import PARTS, DataError, load_idx_folder, write_idx

N_TRAIN = 60_000  # full MNIST's training set
SHIFT = 2  # largest shift of a copy, in pixels (MNIST's digits sit in a 20 x 20 box with 4 blank pixels around)
SEED = 0


def shifted(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Each image ``(N, 1, 28, 28)`` moved by its own ``(dx, dy)`` pixels, with black coming in at the edges."""
    pad = int(max(dx.abs().max(), dy.abs().max(), 0))
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (torch.arange(28) + pad)[None, :] - dy[:, None]  # (N, 28): source row of each output row
    cols = (torch.arange(28) + pad)[None, :] - dx[:, None]
    index = torch.arange(len(images))[:, None, None]
    return padded[:, 0][index, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def random_offsets(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dx, dy)`` for ``n`` copies: each offset drawn uniformly from those of at most ``SHIFT`` pixels in x and
    y, never (0, 0)."""
    offsets = [(dx, dy) for dx in range(-SHIFT, SHIFT + 1) for dy in range(-SHIFT, SHIFT + 1) if (dx, dy) != (0, 0)]
    pick = torch.randint(len(offsets), (n,), generator=generator).tolist()
    dx, dy = (torch.tensor([offsets[i][axis] for i in pick]) for axis in (0, 1))
    return dx, dy


def build(folder: Path | str, source: Path | str | None = None, n_train: int = N_TRAIN) -> Path:
    """Write the stand-in into ``folder`` (created) from the test-split folder ``source``
    (default ``$AECOURSE_MNIST_DIR``); returns ``folder``, ready for ``$AECOURSE_MNIST_DIR``."""
    source = source or os.environ.get(_paths.MNIST_DIR_ENV)
    if not source:
        raise DataError(f"the stand-in is built from MNIST's test split: set ${_paths.MNIST_DIR_ENV} to the folder "
                        "that holds t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    ds = load_idx_folder(Path(source))
    if "test split only" not in ds.source:
        raise DataError(f"{source} holds MNIST's official training split already: measure on it directly "
                        "(no stand-in needed)")
    base_x, base_y = ds.train_x, ds.train_y
    if n_train < len(base_x):
        raise ValueError(f"n_train must be at least the {len(base_x):,} images it is built from, got {n_train:,}")
    extra = n_train - len(base_x)
    which = torch.arange(extra) % len(base_x)
    copies = shifted(base_x[which], *random_offsets(extra, torch.Generator().manual_seed(SEED)))
    train_x = torch.cat([base_x, copies])
    train_y = torch.cat([base_y, base_y[which]])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    as_bytes = lambda x: (x[:, 0] * 255).round().to(torch.uint8).numpy()  # noqa: E731
    write_idx(folder / PARTS["train_x"], as_bytes(train_x))
    write_idx(folder / PARTS["train_y"], train_y.to(torch.uint8).numpy())
    write_idx(folder / PARTS["test_x"], as_bytes(ds.test_x))
    write_idx(folder / PARTS["test_y"], ds.test_y.to(torch.uint8).numpy())
    (folder / "SOURCE.txt").write_text(
        f"a {n_train:,}-image stand-in for full MNIST: the {len(base_x):,} training images of the fixed split of "
        f"MNIST's test set and {extra:,} copies shifted by up to {SHIFT} pixels; held out: the split's "
        f"{len(ds.test_x):,} other images (built from {source})\n")
    return folder
