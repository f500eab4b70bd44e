"""Tiny-ImageNet from the extracted ``tiny-imagenet-200`` folder, with real JPEGs written by PIL."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import assert_read_as_written, write_tiny_imagenet

from fastlrwa.data import CorruptDataError, load_split


def test_tiny_imagenet_round_trip(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    for split, expected in (("train", fixture.train), ("test", fixture.test)):
        loaded = load_split("tiny-imagenet", split, root=tmp_path)
        # Pixels are compared with PIL's own decode of each file (one of them a greyscale JPEG).
        assert_read_as_written(loaded, expected, 3, 64)
        assert loaded.info.num_classes == len(fixture.wnids)
        assert loaded.info.class_names == tuple(fixture.names)
        assert loaded.info.image_size == 64 and loaded.info.channels == 3


def test_classes_are_numbered_in_sorted_wnid_order(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    loaded = load_split("tiny-imagenet", "train", root=tmp_path / "tiny-imagenet-200")
    assert fixture.names == ["goldfish", "tabby", "fixture class"]
    # Class k has k + 2 training images in the fixture.
    np.testing.assert_array_equal(np.bincount(loaded.labels.numpy()), [2, 3, 4])


def test_val_annotation_with_unknown_class_is_reported(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    annotations = fixture.folder / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    lines[2] = "val_2.JPEG\tn00000042\t0\t0\t63\t63"
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptDataError, match="line 3"):
        load_split("tiny-imagenet", "test", root=tmp_path)


def test_unreadable_jpeg_names_the_file(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    broken = fixture.train.files[-1]
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(CorruptDataError) as caught:
        load_split("tiny-imagenet", "train", root=tmp_path)
    assert str(broken) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_class_folder_is_reported(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    with open(fixture.folder / "wnids.txt", "a") as handle:
        handle.write("n01629819\n")
    with pytest.raises(CorruptDataError, match="n01629819"):
        load_split("tiny-imagenet", "train", root=tmp_path)
