import shutil
import warnings

import numpy as np
import pytest
import torch

from aecourse import data
from aecourse.data import (HOW_TO_GET_MNIST, Batches, DataError, FallbackDataWarning, add_noise, check_images,
                           load_mnist, read_idx, where_from)
from support import MNIST_DIR, needs_mnist, write_idx


def _synthetic_folder(folder, n_test=50, n_train=None, compress=False):
    """IDX files with random content (no md5 is known for them, so only structure is checked)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if compress else ""
    splits = {"t10k": n_test} if n_train is None else {"t10k": n_test, "train": n_train}
    for prefix, n in splits.items():
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


# --- IDX reading and corrupt files ------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips(tmp_path, suffix):
    array = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_truncated_file_names_the_file_and_the_fix(tmp_path):
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated.*Delete"):
        read_idx(path)


def test_bad_header_and_bad_gzip_are_reported(tmp_path):
    bad = tmp_path / "junk-idx3-ubyte"
    bad.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    gz = tmp_path / "junk-idx3-ubyte.gz"
    gz.write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    with pytest.raises(DataError, match="cannot be decompressed"):
        read_idx(gz)


def test_checksum_mismatch_is_an_error_never_silent_data(tmp_path):
    folder = _synthetic_folder(tmp_path / "mnist", compress=True)  # names have known md5s, content doesn't
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz is corrupt or incomplete \(md5"):
        data.load_idx_folder(folder)


@needs_mnist
def test_corrupted_copy_of_real_mnist_is_caught(tmp_path):
    for f in MNIST_DIR.glob("t10k-*"):
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:500_000])  # a download cut short
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        data.load_idx_folder(tmp_path)
    assert target.stat().st_size == 500_000  # the user's file is left as it was


# --- the three sources --------------------------------------------------------------------------

@needs_mnist
def test_real_mnist_test_split_is_divided_8000_2000_reproducibly():
    ds = data.load_idx_folder(MNIST_DIR)
    assert ds.train_x.shape == (8000, 1, 28, 28) and ds.test_x.shape == (2000, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    assert "8,000 train / 2,000 held-out" in ds.source
    full_labels = torch.from_numpy(read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    together = torch.cat([ds.train_y, ds.test_y])
    assert torch.equal(together.bincount(), full_labels.bincount())  # a partition of the 10,000
    assert torch.equal(data.load_idx_folder(MNIST_DIR).test_y, ds.test_y)
    # the real test set's first image is a 7: check the pixels went through unchanged
    first = torch.from_numpy(read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")[0].copy()).float() / 255
    order = np.random.default_rng(data.SPLIT_SEED).permutation(10_000)
    where = int(np.where(order == 0)[0][0])
    split_x = ds.train_x if where < 8000 else ds.test_x
    assert torch.equal(split_x[where % 8000 if where < 8000 else where - 8000, 0], first)


def test_env_folder_is_used_first(tmp_path, monkeypatch):
    folder = _synthetic_folder(tmp_path / "idx", n_test=40)
    monkeypatch.setenv("AECOURSE_MNIST_DIR", str(folder))
    ds = load_mnist(data_dir=tmp_path / "unused", download=False)
    assert (len(ds.train_x), len(ds.test_x)) == (32, 8)
    assert str(folder) in ds.source


def test_env_folder_without_files_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("AECOURSE_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*AECOURSE_MNIST_DIR"):
        load_mnist(download=False)


def test_torchvision_cache_with_both_splits_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("AECOURSE_MNIST_DIR", raising=False)
    _synthetic_folder(tmp_path / "MNIST" / "raw", n_test=30, n_train=70)
    ds = load_mnist(data_dir=tmp_path, download=False)
    assert (len(ds.train_x), len(ds.test_x)) == (70, 30)
    assert ds.source.startswith("official mnist train/test splits")


def test_fallback_when_nothing_is_available_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("AECOURSE_MNIST_DIR", raising=False)
    with pytest.warns(FallbackDataWarning, match="MNIST is not available.*AECOURSE_MNIST_DIR") as warned:
        ds = load_mnist(data_dir=tmp_path, download=False)
    message = str(warned[0].message)  # whole sentences, the way to MNIST in full, the reason last
    assert HOW_TO_GET_MNIST in message and message.endswith("downloading was turned off.)")
    assert ds.name == "digits-fallback"
    assert ds.train_x.shape == (1500, 1, 28, 28) and ds.test_x.shape == (297, 1, 28, 28)
    assert 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    assert set(ds.train_y.tolist()) == set(range(10))
    assert ds.train_x[:, :, :4].abs().sum() == 0  # digits sit inside a 20x20 box, like MNIST's


def test_fashion_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("AECOURSE_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(DataError, match="Fashion-MNIST is not available.*AECOURSE_FASHION_MNIST_DIR"):
        load_mnist(kind="fashion", data_dir=tmp_path, download=False)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="'mnist' or 'fashion'"):
        load_mnist(kind="cifar")


def test_subsets_are_fixed_and_config_driven(tmp_path, cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackDataWarning)
        a = load_mnist(cfg, download=False)
        b = load_mnist(cfg, download=False)
    assert (len(a.train_x), len(a.test_x)) == (min(512, 1500), min(256, 297))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)


# --- shapes, batches, noise ---------------------------------------------------------------------

@pytest.mark.parametrize("shape, hint", [((4, 784), "view(-1, 1, 28, 28)"), ((4, 28, 28), "unsqueeze(1)"),
                                         ((1, 28, 28), "unsqueeze(0)"), ((4, 3, 28, 28), "got (4, 3, 28, 28)")])
def test_check_images_explains_wrong_shapes(shape, hint):
    with pytest.raises(ValueError, match=hint.replace("(", r"\(").replace(")", r"\)")):
        check_images(torch.zeros(shape))
    with pytest.raises(ValueError, match="float"):
        check_images(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_batches_visit_every_image_once_per_epoch_and_repeat_under_a_seed():
    x = torch.arange(10).float().view(10, 1, 1, 1).expand(10, 1, 28, 28).contiguous()
    y = torch.arange(10)
    batches = Batches(x, y, batch_size=4, seed=3)
    assert len(batches) == 3
    epoch1 = [(bx[:, 0, 0, 0].long(), by) for bx, by in batches]
    epoch2 = [by for _, by in batches]
    for bx, by in epoch1:
        assert torch.equal(bx, by)  # images stay paired with their labels
    assert sorted(torch.cat([by for _, by in epoch1]).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(epoch2), torch.cat([by for _, by in epoch1]))  # reshuffled
    again = [by for _, by in Batches(x, y, batch_size=4, seed=3)]
    assert all(torch.equal(a, b) for a, (_, b) in zip(again, epoch1))
    assert len(Batches(x, y, batch_size=4, drop_last=True)) == 2
    ordered = torch.cat([by for _, by in Batches(x, y, batch_size=4, shuffle=False)])
    assert torch.equal(ordered, y)


def test_batches_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        Batches(torch.zeros(3, 1, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        Batches(torch.zeros(3, 784))


def test_gaussian_noise_has_the_requested_spread():
    x = torch.full((200, 1, 28, 28), 0.5)
    noisy = add_noise(x, 0.1, generator=torch.Generator().manual_seed(0))
    assert abs((noisy - x).std().item() - 0.1) < 0.005
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(noisy, add_noise(x, 0.1, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(add_noise(x, 0.0), x)


def test_mask_and_salt_pepper_noise_hit_the_requested_fraction():
    x = torch.full((100, 1, 28, 28), 0.5)
    masked = add_noise(x, 0.3, "mask", torch.Generator().manual_seed(0))
    assert abs((masked == 0).float().mean().item() - 0.3) < 0.01
    sp = add_noise(x, 0.2, "salt_pepper", torch.Generator().manual_seed(0))
    changed = sp != 0.5
    assert abs(changed.float().mean().item() - 0.2) < 0.01
    assert set(sp[changed].unique().tolist()) == {0.0, 1.0}


def test_noise_arguments_are_validated():
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="kind"):
        add_noise(x, 0.1, "pink")
    with pytest.raises(ValueError, match="level"):
        add_noise(x, 1.5, "mask")


def test_without_class_removes_a_digit_from_training_only(small_data):
    ds = small_data.without_class(3)
    assert (ds.train_y != 3).all() and len(ds.train_x) == int((small_data.train_y != 3).sum())
    assert torch.equal(ds.test_y, small_data.test_y) and "3 removed" in ds.source
    with pytest.raises(ValueError, match="no training image"):
        ds.without_class(3)


def test_where_from_names_the_folder_the_lessons_will_read(tmp_path, monkeypatch):
    _synthetic_folder(tmp_path, n_test=30)
    monkeypatch.setenv("AECOURSE_MNIST_DIR", str(tmp_path))
    assert where_from() == (f"The lessons will use MNIST from the IDX files in {tmp_path} ($AECOURSE_MNIST_DIR): "
                            "only the test split, which the lessons divide 80/20 into training and held-out images.")
    monkeypatch.delenv("AECOURSE_MNIST_DIR")
    _synthetic_folder(tmp_path / "cache" / "MNIST" / "raw", n_test=30, n_train=70)
    assert where_from(tmp_path / "cache").startswith("The lessons will use MNIST from torchvision's cache in")


@pytest.mark.parametrize("online", [True, False])
def test_where_from_says_whether_the_lessons_will_download_or_fall_back(tmp_path, monkeypatch, online):
    import urllib.request

    def answer(request, timeout):
        if not online:
            raise urllib.error.URLError("Name or service not known")
        return None

    monkeypatch.delenv("AECOURSE_MNIST_DIR", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", answer)
    said = where_from(tmp_path)
    if online:
        assert said == f"The lessons will download MNIST (about 12 MB) into {tmp_path} the first time one loads it."
    else:
        assert said.startswith("MNIST is not on this machine and its download site")
        assert "Name or service not known" in said and said.endswith(HOW_TO_GET_MNIST)


def test_block_images_are_reproducible_binary_and_not_empty():
    from aecourse.data import block_images
    a, b = block_images(6, seed=3), block_images(6, seed=3)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and not torch.equal(a, block_images(6, seed=4))
    assert set(a.unique().tolist()) == {0.0, 1.0} and (a.flatten(1).sum(1) >= 9).all()
    with pytest.raises(ValueError, match="n >= 1"):
        block_images(0)
