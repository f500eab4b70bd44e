"""CIFAR-10 / CIFAR-100 from their python pickle batches."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from data_fixtures import assert_read_as_written, write_cifar

from fastlrwa.data import CorruptDataError, dataset_info, load_split
from fastlrwa.errors import DataNotFoundError


@pytest.mark.parametrize(("name", "hundred"), [("cifar10", False), ("cifar100", True)])
def test_cifar_round_trip(tmp_path, name, hundred):
    written = write_cifar(tmp_path, hundred=hundred, per_batch=7, rng=np.random.default_rng())
    for split in ("train", "test"):
        loaded = load_split(name, split, root=tmp_path)
        expected = written[split]
        assert_read_as_written(loaded, expected, 3, 32)
        assert loaded.info == dataset_info(name)
    assert len(load_split(name, "train", root=tmp_path).labels) == (7 if hundred else 35)


def test_cifar100_class_names_are_the_alphabetical_fine_labels():
    names = dataset_info("cifar100").class_names
    assert len(names) == 100 and len(set(names)) == 100
    assert list(names) == sorted(names)


def test_missing_batch_is_not_found(tmp_path):
    write_cifar(tmp_path, hundred=False, per_batch=3, rng=np.random.default_rng())
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_4") as caught:
        load_split("cifar10", "train", root=tmp_path)
    assert "not found" in str(caught.value)


def test_truncated_batch_names_the_file(tmp_path):
    write_cifar(tmp_path, hundred=True, per_batch=5, rng=np.random.default_rng())
    path = tmp_path / "cifar-100-python" / "test"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError) as caught:
        load_split("cifar100", "test", root=tmp_path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


class _Payload:
    """Unpickling this would call the builtin ``exec``; the reader must refuse before it does."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def test_pickle_naming_other_globals_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({"data": _Payload(), "labels": [0]}, handle, protocol=2)
    with pytest.raises(CorruptDataError, match=r"refusing to load \w+\.exec"):
        load_split("cifar10", "test", root=tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_batch_with_wrong_row_length_is_reported(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump(
            {"data": np.random.default_rng().integers(0, 256, (3, 3 * 28 * 28), dtype=np.uint8), "labels": [0, 1, 2]},
            handle,
            protocol=2,
        )
    with pytest.raises(CorruptDataError, match=r"expected uint8 \[N, 3072\]"):
        load_split("cifar10", "test", root=tmp_path)
