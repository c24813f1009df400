"""MNIST and Fashion-MNIST as tensors, a device-resident batch iterator, and noise.

Sources, tried in order:
1. a folder of raw IDX files named by ``$AECOURSE_MNIST_DIR`` (``$AECOURSE_FASHION_MNIST_DIR``);
2. torchvision's cache in ``Config.data_dir``, downloading when online;
3. MNIST only: an embedded stand-in (scikit-learn's 8x8 digits upscaled to 28x28),
   with a ``FallbackDataWarning`` that says how to get MNIST.
A folder holding only the 10,000-image test split is split 8,000 / 2,000 with a fixed
permutation (``TEST_ONLY_TRAIN_FRACTION``). Every ``.gz`` file is checked against torchvision's
md5; a corrupt or truncated file raises ``DataError`` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from aecourse import _paths

SPLIT_SEED = 0  # numpy PCG64 seed of every fixed permutation below (stable across versions)
TEST_ONLY_TRAIN_FRACTION = 0.8  # a test-only folder is split 80/20: 8,000 / 2,000 for MNIST's 10,000
PARTS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
MD5 = {  # of the .gz files, as torchvision checks them
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
ENV = {"mnist": _paths.MNIST_DIR_ENV, "fashion": _paths.FASHION_DIR_ENV}
HOW_TO_GET_MNIST = ("To use MNIST, connect to the internet and run the lesson again, or copy its four IDX files "
                    f"({', '.join(f'{stem}.gz' for stem in PARTS.values())}) into a folder and set "
                    f"${_paths.MNIST_DIR_ENV} to that folder.")


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or truncated; the message says how to fix it."""


class FallbackDataWarning(UserWarning):
    """MNIST was not available and the small embedded stand-in was loaded instead."""


@dataclass
class Dataset:
    """Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64, train and held-out."""

    name: str  # "mnist", "fashion" or "digits-fallback"
    source: str  # where the images came from, in words
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    def to(self, device: torch.device | str) -> "Dataset":
        """A copy with every tensor on ``device`` (keep the whole set there for fast batching)."""
        moved = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        return Dataset(self.name, self.source, classes=self.classes, **moved)

    def without_class(self, label: int) -> "Dataset":
        """A copy whose *training* images exclude one class (held-out images keep every class)."""
        keep = self.train_y != label
        if keep.all():
            raise ValueError(f"no training image has label {label}")
        return Dataset(f"{self.name} without {label}", f"{self.source}; training images of class {label} removed",
                       self.train_x[keep], self.train_y[keep], self.test_x, self.test_y, self.classes)

    def binarized_held_out(self, seed: int = 0) -> "Dataset":
        """A copy for a Bernoulli decoder: held-out images binarized once (``binarize`` with ``seed``).

        The training images stay grey: a VAE objective with ``binarize=True`` draws a fresh
        binarization of every batch (dynamic binarization), while a fixed binarization of the held-out
        set makes its figures repeatable. Both are what a Bernoulli likelihood needs: pixels in {0, 1}.
        """
        g = torch.Generator().manual_seed(seed)
        test_x = binarize(self.test_x.cpu(), generator=g).to(self.test_x.device)
        return Dataset(self.name, f"{self.source}; held-out images binarized once (seed {seed})",
                       self.train_x, self.train_y, test_x, self.test_y, self.classes)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {len(self.train_x):,} train / {len(self.test_x):,} held-out "
                f"images of {tuple(self.train_x.shape[1:])} on {self.train_x.device}; {self.source})")


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise a ``ValueError`` that says what to do unless ``x`` is ``(B, 1, 28, 28)`` floats."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images (B, 1, 28, 28), got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        hint = ""
        if x.dim() == 2 and x.shape[-1] == 784:
            hint = f": reshape flat images with {name}.view(-1, 1, 28, 28)"
        elif x.dim() == 3 and tuple(x.shape) == (1, 28, 28):
            hint = f": for a single image, add the batch axis with {name}.unsqueeze(0)"
        elif x.dim() == 3 and tuple(x.shape[1:]) == (28, 28):
            hint = f": add the channel axis with {name}.unsqueeze(1)"
        raise ValueError(f"{name} must have shape (B, 1, 28, 28), got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floats in [0, 1], got dtype {x.dtype}: use {name}.float() / 255")
    return x


# --- IDX files -------------------------------------------------------------------------------

def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes, checking md5, header and length."""
    path = Path(path)
    fix = (f"Delete {path} and run again to download it afresh, or point "
           f"${_paths.MNIST_DIR_ENV} at a folder with intact copies.")
    if expected_md5 is not None and (got := _md5(path)) != expected_md5:
        raise DataError(f"{path} is corrupt or incomplete (md5 {got}, expected {expected_md5}). {fix}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise DataError(f"{path} cannot be decompressed ({err}). {fix}") from err
    if len(raw) < 8 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad header). {fix}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} is truncated: its header promises {shape} values "
                        f"but it holds {len(raw) - header}. {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (unsigned bytes, any number of axes) as a raw IDX file, the format ``read_idx`` reads."""
    path = Path(path)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    return x, torch.from_numpy(labels.astype(np.int64))


def load_idx_folder(folder: Path, kind: str = "mnist") -> Dataset:
    """Load a folder of IDX files: both official splits, or only the test split (split 8k/2k).

    A ``SOURCE.txt`` beside the files (e.g. ``aecourse.bench.standin``'s) is reported as the data's source.
    """
    folder = Path(folder)
    found = {part: _find(folder, stem) for part, stem in PARTS.items()}
    if found["test_x"] is None or found["test_y"] is None:
        raise DataError(f"{folder} has no {PARTS['test_x']}[.gz] and {PARTS['test_y']}[.gz]; "
                        f"put the MNIST IDX files there or unset ${ENV[kind]}.")
    arrays = {part: read_idx(p, MD5[kind].get(p.name)) for part, p in found.items() if p is not None}
    test_x, test_y = _as_tensors(arrays["test_x"], arrays["test_y"])
    if "train_x" in arrays and "train_y" in arrays:
        train_x, train_y = _as_tensors(arrays["train_x"], arrays["train_y"])
        described = folder / "SOURCE.txt"  # a folder built for benchmarks says what it holds
        source = (described.read_text().strip() if described.is_file()
                  else f"official {kind} train/test splits from {folder}")
    else:
        n_train = round(TEST_ONLY_TRAIN_FRACTION * len(test_x))
        n_test = len(test_x) - n_train
        order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(test_x)))
        train_idx, test_idx = order[:n_train], order[n_train:]
        train_x, train_y, test_x, test_y = test_x[train_idx], test_y[train_idx], test_x[test_idx], test_y[test_idx]
        source = (f"the {kind} test split only, from {folder}: a fixed split of its {len(order):,} images "
                  f"into {n_train:,} train / {n_test:,} held-out (numpy seed {SPLIT_SEED})")
    return Dataset(kind, source, train_x, train_y, test_x, test_y, CLASSES[kind])


def _torchvision_folder(data_dir: Path, kind: str, download: bool) -> tuple[Path | None, str]:
    """Fetch the raw files into torchvision's cache; return the folder (or None and why)."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion": datasets.FashionMNIST}[kind]
    raw = Path(data_dir) / cls.__name__ / "raw"
    if all(_find(raw, stem) for stem in PARTS.values()):
        return raw, ""
    if not download:
        return None, f"nothing cached in {raw} and downloading was turned off"
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            for train in (True, False):
                cls(str(data_dir), train=train, download=True)
    except Exception as err:  # no network, a proxy, a mirror down: all mean "not available"
        return None, f"the download failed: {' '.join(str(err).split())}"
    return raw, ""


def where_from(data_dir: Path | None = None, timeout: float = 3.0) -> str:
    """Where ``load_mnist()`` will take MNIST from on this machine, in a sentence or two, without downloading it.

    The environment variable's folder, else torchvision's cache, else a download when the first
    mirror answers within ``timeout`` seconds; otherwise the offline stand-in, and how to get MNIST.
    """
    import urllib.request

    from torchvision import datasets

    if folder := os.environ.get(ENV["mnist"]):
        found = [stem for stem in PARTS.values() if _find(Path(folder), stem)]
        split = ("both official splits" if len(found) == 4 else
                 "only the test split, which the lessons divide 80/20 into training and held-out images")
        return f"The lessons will use MNIST from the IDX files in {folder} (${ENV['mnist']}): {split}."
    data_dir = Path(data_dir) if data_dir is not None else _paths.default_data_dir()
    raw = data_dir / "MNIST" / "raw"
    if all(_find(raw, stem) for stem in PARTS.values()):
        return f"The lessons will use MNIST from torchvision's cache in {raw} (60,000 train / 10,000 held-out images)."
    mirror = datasets.MNIST.mirrors[0]
    try:
        urllib.request.urlopen(urllib.request.Request(mirror, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        pass  # the server answered (a listing may be forbidden): downloads will work
    except OSError as err:
        return (f"MNIST is not on this machine and its download site ({mirror}) cannot be reached "
                f"({getattr(err, 'reason', err)}): the lessons will use a small stand-in of 1,500 digits "
                f"and say so. {HOW_TO_GET_MNIST}")
    return f"The lessons will download MNIST (about 12 MB) into {data_dir} the first time one loads it."


def digits_fallback() -> Dataset:
    """scikit-learn's 1,797 bundled 8x8 digits, upscaled to MNIST's 28x28 layout (1,500 / 297)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images).float().div_(16).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    big = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    images = F.pad(big, (4, 4, 4, 4)).clamp_(0, 1)  # MNIST digits sit in a 20x20 box inside 28x28
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(images)))
    train, test = order[:1500], order[1500:]
    source = "scikit-learn's 8x8 digits upscaled to 28x28 (a small stand-in for MNIST)"
    return Dataset("digits-fallback", source, images[train], labels[train], images[test], labels[test],
                   CLASSES["mnist"])


def _subset(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n >= len(x):
        return x, y
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[idx], y[idx]


def load_mnist(cfg=None, *, kind: str = "mnist", n_train: int | None = None, n_test: int | None = None,
               data_dir: Path | None = None, download: bool = True,
               device: torch.device | str | None = None) -> Dataset:
    """Load MNIST (``kind="mnist"``) or Fashion-MNIST (``kind="fashion"``) as tensors.

    ``cfg`` (a ``Config``) supplies ``n_train``, ``n_test``, ``data_dir`` and the device
    unless they are given here. Subsets are fixed random draws, the same on every call.
    """
    if kind not in MD5:
        raise ValueError(f"kind must be 'mnist' or 'fashion', got {kind!r}")
    if cfg is not None:
        n_train = cfg.n_train if n_train is None else n_train
        n_test = cfg.n_test if n_test is None else n_test
        data_dir = cfg.data_dir if data_dir is None else data_dir
        device = cfg.torch_device if device is None else device
    data_dir = Path(data_dir) if data_dir is not None else _paths.default_data_dir()

    if folder := os.environ.get(ENV[kind]):
        ds = load_idx_folder(Path(folder), kind)
    else:
        raw, why = _torchvision_folder(data_dir, kind, download)
        if raw is not None:
            ds = load_idx_folder(raw, kind)
        elif kind == "fashion":
            raise DataError(f"Fashion-MNIST is not available: {why}. Connect to the internet, or "
                            f"download its four IDX files and set ${ENV[kind]} to their folder.")
        else:
            ds = digits_fallback()
            warnings.warn(FallbackDataWarning(
                f"MNIST is not available here, so this lesson uses a small stand-in: {ds.source}, "
                f"{len(ds.train_x):,} train / {len(ds.test_x):,} held-out images. Its figures and scores "
                f"will differ from MNIST's. {HOW_TO_GET_MNIST} (Why MNIST is missing: {why}.)"), stacklevel=2)
    ds.train_x, ds.train_y = _subset(ds.train_x, ds.train_y, n_train, SPLIT_SEED + 1)
    ds.test_x, ds.test_y = _subset(ds.test_x, ds.test_y, n_test, SPLIT_SEED + 2)
    return ds.to(device) if device is not None else ds


# --- batches and noise -------------------------------------------------------------------------

class Batches:
    """Mini-batches sliced from tensors that already live on the training device.

    No per-image decoding and no worker processes: one index tensor per epoch, shuffled
    by a generator seeded once, so successive epochs differ but every run is the same.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 128,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        check_images(images, "images")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator).to(self.images.device) if self.shuffle else None
        for i in range(len(self)):
            window = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            idx = order[window] if order is not None else window
            yield self.images[idx], (self.labels[idx] if self.labels is not None else None)


NOISE_KINDS = ("gaussian", "salt_pepper", "mask")


def add_noise(x: torch.Tensor, level: float, kind: str = "gaussian",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt images for denoising; returns a new tensor in [0, 1].

    ``gaussian``: add N(0, level^2) per pixel; ``salt_pepper``: set a fraction ``level`` of
    pixels to 0 or 1; ``mask``: set a fraction ``level`` of pixels to 0.
    """
    check_images(x)
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
    if level < 0 or (kind != "gaussian" and level > 1):
        raise ValueError(f"level must be >= 0 (and <= 1 for {kind!r}), got {level}")
    where = generator.device if generator is not None else x.device  # draw where the generator lives

    def draw(fn):
        return fn(x.shape, generator=generator, device=where).to(x.device)

    if kind == "gaussian":
        return (x + level * draw(torch.randn).to(x.dtype)).clamp(0, 1)
    hit = draw(torch.rand) < level
    if kind == "mask":
        return x.masked_fill(hit, 0.0)
    salt = draw(torch.rand) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each pixel drawn as Bernoulli(its intensity): ``(B, 1, 28, 28)`` in [0, 1] -> the same shape in {0, 1}.

    The mean of many binarizations is the grey image; a pixel already 0 or 1 stays as it is, so
    binarizing a binary image changes nothing.
    """
    check_images(x)
    if x.device.type == "cpu" and (x.min() < 0 or x.max() > 1):  # on a GPU, reading the range would stall
        raise ValueError(f"binarize needs intensities in [0, 1] (the probability of a white pixel), got values "
                         f"from {x.min().item():.3g} to {x.max().item():.3g}: rescale the images first")
    where = generator.device if generator is not None else x.device
    return torch.bernoulli(x.to(where), generator=generator).to(x.device, x.dtype)


def block_images(n: int, blocks: int = 3, seed: int = 0) -> torch.Tensor:
    """``n`` images that are not digits: ``blocks`` white rectangles of random place and size on black,
    ``(n, 1, 28, 28)`` in {0, 1}; the same ``seed`` gives the same images. An autoencoder that copies its
    input reconstructs them about as well as digits; one with a real bottleneck cannot."""
    if n < 1 or blocks < 1:
        raise ValueError(f"need n >= 1 images of blocks >= 1 rectangles, got n={n}, blocks={blocks}")
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 28, 28)
    corners = torch.randint(0, 22, (n, blocks, 2), generator=g)
    sizes = torch.randint(3, 10, (n, blocks, 2), generator=g)
    for i in range(n):
        for (top, left), (h, w) in zip(corners[i].tolist(), sizes[i].tolist()):
            images[i, 0, top:top + h, left:left + w] = 1.0
    return images
