"""SVHN from ``{train,test}_32x32.mat``: layout [32, 32, 3, N], label 10 means digit 0."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from data_fixtures import assert_read_as_written, write_svhn

from fastlrwa.data import CorruptDataError, dataset_info, load_split


@pytest.mark.parametrize("subdir", ["svhn", "."])
def test_svhn_round_trip(tmp_path, subdir):
    rng = np.random.default_rng()
    written = {split: write_svhn(tmp_path / subdir, split, n, rng) for split, n in (("train", 9), ("test", 5))}
    for split, expected in written.items():
        loaded = load_split("svhn", split, root=tmp_path)
        assert_read_as_written(loaded, expected, 3, 32)
    assert load_split("svhn", "train", root=tmp_path).labels[0] == 0  # stored as 10 on disk


def test_svhn_is_cropped_but_not_flipped():
    info = dataset_info("svhn")
    assert info.augment and not info.flip


def test_svhn_with_label_zero_on_disk_is_reported(tmp_path):
    rng = np.random.default_rng()
    folder = tmp_path / "svhn"
    folder.mkdir()
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    scipy.io.savemat(folder / "test_32x32.mat", {"X": x, "y": np.array([[1], [0], [3], [10]], dtype=np.uint8)})
    with pytest.raises(CorruptDataError, match="labels outside 1..10"):
        load_split("svhn", "test", root=tmp_path)


def test_svhn_truncated_file_names_the_file(tmp_path):
    written = write_svhn(tmp_path / "svhn", "test", 6, np.random.default_rng())
    path = written.files[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError) as caught:
        load_split("svhn", "test", root=tmp_path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
