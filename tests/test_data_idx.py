"""MNIST / Fashion-MNIST from IDX files: round trip, search order, corrupt files, the real Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import write_idx_pair
from PIL import Image

from fastlrwa.data import CorruptDataError, dataset_info, load_split
from fastlrwa.data import idx as idx_module


def _pil_bilinear_32(images_28: np.ndarray) -> np.ndarray:
    """Independent reference for the 28 -> 32 resize: PIL's bilinear filter, as torchvision's Resize uses."""
    return np.stack([np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR)) for img in images_28[:, 0]])


@pytest.fixture
def no_debian_fashion(monkeypatch, tmp_path):
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("name", "subdir"),
    [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"), ("fashion-mnist", "fashion-mnist")],
)
def test_idx_round_trip(tmp_path, no_debian_fashion, name, subdir, gz):
    rng = np.random.default_rng()
    written = {
        "train": write_idx_pair(tmp_path / subdir, "train", 7, gz=gz, rng=rng),
        "test": write_idx_pair(tmp_path / subdir, "t10k", 5, gz=gz, rng=rng),
    }
    for split, expected in written.items():
        loaded = load_split(name, split, root=tmp_path)
        assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
        assert loaded.images.shape == (len(expected.labels), 1, 32, 32)
        assert loaded.images.is_contiguous()
        np.testing.assert_array_equal(loaded.labels.numpy(), expected.labels)
        diff = np.abs(loaded.images[:, 0].numpy().astype(int) - _pil_bilinear_32(expected.images).astype(int))
        assert diff.max() <= 1  # PIL rounds in fixed point, we round the float result
        assert loaded.info == dataset_info(name)


def test_fashion_search_order_prefers_torchvision_layout(tmp_path, no_debian_fashion):
    rng = np.random.default_rng()
    preferred = write_idx_pair(tmp_path / "FashionMNIST" / "raw", "t10k", 3, gz=True, rng=rng)
    write_idx_pair(tmp_path, "t10k", 9, gz=False, rng=rng)
    loaded = load_split("fashion-mnist", "test", root=tmp_path)
    np.testing.assert_array_equal(loaded.labels.numpy(), preferred.labels)


def test_plain_file_preferred_over_gz_in_same_folder(tmp_path):
    rng = np.random.default_rng()
    write_idx_pair(tmp_path / "MNIST" / "raw", "t10k", 4, gz=True, rng=rng)
    plain = write_idx_pair(tmp_path / "MNIST" / "raw", "t10k", 6, gz=False, rng=rng)
    loaded = load_split("mnist", "test", root=tmp_path)
    np.testing.assert_array_equal(loaded.labels.numpy(), plain.labels)


def _only_line(message: str) -> str:
    assert "\n" not in message
    return message


def test_wrong_magic_number_names_the_file(tmp_path):
    written = write_idx_pair(tmp_path / "mnist", "train", 5, gz=False, rng=np.random.default_rng())
    images_path = written.files[0]
    data = bytearray(images_path.read_bytes())
    data[3] = 0x01  # the labels' magic number in the images file
    images_path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError) as caught:
        load_split("mnist", "train", root=tmp_path)
    assert str(images_path) in _only_line(str(caught.value))
    assert "magic" in str(caught.value)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_names_the_file(tmp_path, gz):
    written = write_idx_pair(tmp_path / "mnist", "t10k", 5, gz=gz, rng=np.random.default_rng())
    damaged = written.files[0] if gz else written.files[1]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) - 3])
    with pytest.raises(CorruptDataError) as caught:
        load_split("mnist", "test", root=tmp_path)
    assert str(damaged) in _only_line(str(caught.value))


def test_label_out_of_range_is_reported(tmp_path):
    written = write_idx_pair(tmp_path / "mnist", "t10k", 5, gz=False, rng=np.random.default_rng())
    labels_path = written.files[1]
    data = bytearray(labels_path.read_bytes())
    data[-1] = 10
    labels_path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError) as caught:
        load_split("mnist", "test", root=tmp_path)
    assert "0..9" in _only_line(str(caught.value))


def test_images_and_labels_of_different_lengths_are_reported(tmp_path):
    rng = np.random.default_rng()
    write_idx_pair(tmp_path / "mnist", "t10k", 5, gz=False, rng=rng)
    other = write_idx_pair(tmp_path / "other", "t10k", 4, gz=False, rng=rng)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(other.files[1].read_bytes())
    with pytest.raises(CorruptDataError, match="5 images but labels of shape"):
        load_split("mnist", "test", root=tmp_path)


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _read_real_idx(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), dtype=np.uint8, offset=header)


def test_real_fashion_mnist_from_debian_package(tmp_path):
    if not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
    for split, prefix, n in (("train", "train", 60000), ("test", "t10k", 10000)):
        loaded = load_split("fashion-mnist", split, root=tmp_path / "empty-root")
        assert loaded.images.shape == (n, 1, 32, 32)
        assert loaded.info.num_classes == 10
        # Fashion-MNIST is balanced: 6000 / 1000 images of each class.
        np.testing.assert_array_equal(np.bincount(loaded.labels.numpy(), minlength=10), np.full(10, n // 10))
        raw_labels = _read_real_idx(REAL_FASHION / f"{prefix}-labels-idx1-ubyte.gz", 8)
        np.testing.assert_array_equal(loaded.labels.numpy(), raw_labels)
        raw_images = _read_real_idx(REAL_FASHION / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(n, 1, 28, 28)
        picks = np.random.default_rng().choice(n, 25, replace=False)
        diff = np.abs(loaded.images[picks, 0].numpy().astype(int) - _pil_bilinear_32(raw_images[picks]).astype(int))
        assert diff.max() <= 1
