"""Data that is not on disk: the one-line error, the default root, and ``download=True``."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets
from data_fixtures import write_svhn

from fastlrwa.data import idx as idx_module
from fastlrwa.data import load_split
from fastlrwa.errors import DataNotFoundError

SEARCHED = {
    "mnist": ["MNIST/raw", "mnist", "."],
    "fashion-mnist": ["FashionMNIST/raw", "fashion-mnist", "."],
    "cifar10": ["cifar-10-batches-py"],
    "cifar100": ["cifar-100-python"],
    "svhn": ["svhn", "."],
    "tiny-imagenet": ["tiny-imagenet-200", "."],
}


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", sorted(SEARCHED))
def test_missing_data_lists_every_folder_searched(tmp_path, monkeypatch, name, split):
    debian = tmp_path / "debian-fashion"
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST_DIR", debian)
    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError) as caught:
        load_split(name, split, root=root)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name} {split} split not found")
    searched = message.split("searched: ", 1)[1].split(" for ", 1)[0].split(", ")
    expected = [str(root / sub) for sub in SEARCHED[name]]
    if name == "fashion-mnist":
        expected.append(str(debian))
        assert "apt-get install -y dataset-fashion-mnist" in message
    assert searched == expected
    assert "--download" in message


def test_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTLRWA_DATA", str(tmp_path / "env-root"))
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "env-root" / "cifar-10-batches-py"))):
        load_split("cifar10", "test")
    written = write_svhn(tmp_path / "env-root" / "svhn", "test", 3, np.random.default_rng())
    np.testing.assert_array_equal(load_split("svhn", "test").labels.numpy(), written.labels)


def test_default_root_without_environment_is_under_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTLRWA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = Path(tmp_path) / ".cache" / "fastlrwa" / "data" / "svhn"
    with pytest.raises(DataNotFoundError, match=re.escape(str(expected))):
        load_split("svhn", "train")


class _FakeSVHN:
    """Stands in for torchvision's SVHN: 'downloads' by writing a small file where it would."""

    calls: list[tuple[str, str]] = []

    def __init__(self, root: str, split: str, download: bool) -> None:
        assert download
        _FakeSVHN.calls.append((root, split))
        write_svhn(Path(root), split, 4, np.random.default_rng())


def test_download_goes_through_torchvision_into_the_searched_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "SVHN", _FakeSVHN)
    _FakeSVHN.calls = []
    loaded = load_split("svhn", "test", root=tmp_path, download=True)
    assert _FakeSVHN.calls == [(str(tmp_path / "svhn"), "test")]
    assert loaded.images.shape == (4, 3, 32, 32)
    load_split("svhn", "test", root=tmp_path, download=True)
    assert len(_FakeSVHN.calls) == 1  # present now: no second download


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataNotFoundError) as caught:
        load_split("cifar100", "train", root=tmp_path, download=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"downloading cifar100 into {tmp_path} failed")
    assert "Temporary failure in name resolution" in message


# Fashion-MNIST is left out: it is also searched for in Debian's folder, where this machine may have it.
@pytest.mark.parametrize("name, dataset_class", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100"), ("mnist", "MNIST")])
def test_torchvision_downloads_the_asked_split_into_the_root(tmp_path, monkeypatch, name, dataset_class):
    calls = []

    def offline(root, *, train, download):
        calls.append((root, train, download))
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.datasets, dataset_class, offline)
    for split in ("train", "test"):
        with pytest.raises(DataNotFoundError, match=f"downloading {name} into"):
            load_split(name, split, root=tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
