"""DALI loader on the CPU (``device_id=None``): the same pixels and labels as the torch loader,
augmented windows that are crops of the zero-padded image or their mirrors, normalised with the
dataset statistics, and seeded repeatability.

Measured decoder tolerance: DALI's CPU JPEG decoder and PIL agree bit for bit on the quality-100
JPEGs of the fixture (colour and greyscale), so the JPEG comparisons are exact.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
from data_fixtures import write_tiny_imagenet

from fastlrwa.data import CorruptDataError, dataset_info, load_split
from fastlrwa.data.dali import DaliTrainBatches, load_split_dali
from fastlrwa.data.dali_sources import ArrayImages, dali_source
from fastlrwa.errors import DataNotFoundError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nvidia.dali") is None,
    reason="NVIDIA DALI is not installed: pip install 'fastlrwa[dali]'",
)


def _reference_normalized(pixels_u8: np.ndarray, mean, std) -> np.ndarray:
    """float64 ``(x / 255 - mean) / std`` of ``[N, C, H, W]`` uint8 pixels."""
    shape = (1, len(mean), 1, 1)
    return (pixels_u8.astype(np.float64) / 255.0 - np.reshape(mean, shape)) / np.reshape(std, shape)


def _one_epoch(batches) -> tuple[np.ndarray, np.ndarray, list[int]]:
    images, labels, sizes = [], [], []
    for batch_images, batch_labels in batches.epoch():
        assert batch_images.dtype == torch.float32 and batch_labels.dtype == torch.int64
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        sizes.append(len(batch_labels))
    return np.concatenate(images), np.concatenate(labels), sizes


def _noise_source(rng: np.random.Generator, count: int, side: int, channels: int, *, flip: bool) -> ArrayImages:
    """Random images without zero pixels (so every window of the zero-padded image is unique),
    labelled by their index, under a dataset description with the standard crop augmentation."""
    base = dataset_info("cifar10")
    info = dataclasses.replace(
        base,
        image_size=side,
        channels=channels,
        num_classes=count,
        augment=True,
        flip=flip,
        mean=tuple(rng.uniform(0.2, 0.6, channels)),
        std=tuple(rng.uniform(0.1, 0.4, channels)),
    )
    images = rng.integers(1, 256, (count, side, side, channels), dtype=np.uint8)
    return ArrayImages(images=images, labels=np.arange(count, dtype=np.int64), info=info)


def _window_and_mirror(output: np.ndarray, image: np.ndarray, padding: int, mean, std) -> list[tuple[int, int, bool]]:
    """All (top, left, mirrored) whose window of the zero-padded ``image`` [C, H, W], normalised in
    float64, equals ``output`` within float32 rounding."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    found = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            window = padded[:, top : top + h, left : left + w]
            for mirrored in (False, True):
                candidate = window[:, :, ::-1] if mirrored else window
                expected = _reference_normalized(candidate[None], mean, std)[0]
                if np.allclose(output, expected, rtol=0, atol=1e-5):
                    found.append((top - padding, left - padding, mirrored))
    return found


def test_tiny_imagenet_decodes_to_the_torch_loaders_pixels(tmp_path):
    write_tiny_imagenet(tmp_path, np.random.default_rng())
    for split in ("train", "test"):
        expected = load_split("tiny-imagenet", split, root=tmp_path)
        loaded = load_split_dali("tiny-imagenet", split, root=tmp_path, batch_size=4)
        assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
        assert loaded.images.shape == expected.images.shape and loaded.images.is_contiguous()
        assert torch.equal(loaded.images, expected.images)
        assert torch.equal(loaded.labels, expected.labels)
        assert loaded.info == expected.info


def test_digits_arrive_unchanged_through_external_source():
    for split in ("train", "test"):
        expected = load_split("digits", split)
        loaded = load_split_dali("digits", split, batch_size=97)
        assert torch.equal(loaded.images, expected.images)
        assert torch.equal(loaded.labels, expected.labels)


@pytest.mark.parametrize("dataset", ["tiny-imagenet", "digits"])
def test_unshuffled_unaugmented_batches_are_the_normalized_split_in_order(tmp_path, dataset):
    if dataset == "tiny-imagenet":
        write_tiny_imagenet(tmp_path, np.random.default_rng())
    expected = load_split(dataset, "train", root=tmp_path)
    batch_size = 4 if dataset == "tiny-imagenet" else 100
    batches = DaliTrainBatches(
        dali_source(dataset, "train", root=tmp_path),
        batch_size=batch_size,
        device="cpu",
        seed=1,
        augment=False,
        shuffle=False,
    )
    count = len(expected.labels)
    assert len(batches) == count and batches.steps_per_epoch == -(-count // batch_size)
    for _ in range(2):
        images, labels, sizes = _one_epoch(batches)
        assert sizes == [batch_size] * (count // batch_size) + ([count % batch_size] if count % batch_size else [])
        np.testing.assert_array_equal(labels, expected.labels.numpy())
        reference = _reference_normalized(expected.images.numpy(), expected.info.mean, expected.info.std)
        np.testing.assert_allclose(images, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("flip", [True, False])
def test_augmented_outputs_are_padded_windows_or_their_mirrors(flip):
    rng = np.random.default_rng()
    source = _noise_source(rng, count=53, side=11, channels=3, flip=flip)
    batches = DaliTrainBatches(source, batch_size=8, device="cpu", seed=int(rng.integers(2**31)), shuffle=False)
    chw = source.images.transpose(0, 3, 1, 2)
    tops, lefts, mirrors = set(), set(), set()
    for _ in range(3):
        images, labels, _ = _one_epoch(batches)
        np.testing.assert_array_equal(labels, source.labels)
        for output, image in zip(images, chw):
            found = _window_and_mirror(output, image, 4, source.info.mean, source.info.std)
            assert len(found) == 1, f"{len(found)} windows match an output"
            top, left, mirrored = found[0]
            tops.add(top)
            lefts.add(left)
            mirrors.add(mirrored)
    # 159 draws: each of the 9 offsets is missed with probability (8/9)^159 < 1e-8.
    assert tops == lefts == set(range(-4, 5))
    assert mirrors == ({False, True} if flip else {False})


def test_augmented_tiny_imagenet_windows_come_from_the_decoded_jpegs(tmp_path):
    write_tiny_imagenet(tmp_path, np.random.default_rng())
    expected = load_split("tiny-imagenet", "train", root=tmp_path)
    batches = DaliTrainBatches(
        dali_source("tiny-imagenet", "train", root=tmp_path), batch_size=4, device="cpu", seed=3, shuffle=False
    )
    images, labels, _ = _one_epoch(batches)
    np.testing.assert_array_equal(labels, expected.labels.numpy())
    for output, image in zip(images, expected.images.numpy()):
        assert _window_and_mirror(output, image, 4, expected.info.mean, expected.info.std)


def test_epochs_are_seeded_permutations():
    rng = np.random.default_rng()
    source = _noise_source(rng, count=29, side=9, channels=1, flip=True)

    def run(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        batches = DaliTrainBatches(source, batch_size=6, device="cpu", seed=seed)
        return [_one_epoch(batches)[:2] for _ in range(3)]

    seed = int(rng.integers(2**31))
    first, again, other = run(seed), run(seed), run(seed + 1)
    for (images, labels), (images_again, labels_again) in zip(first, again):
        np.testing.assert_array_equal(images, images_again)
        np.testing.assert_array_equal(labels, labels_again)
    for _, labels in first:
        np.testing.assert_array_equal(np.sort(labels), source.labels)
    orders = [tuple(labels) for _, labels in first]
    assert len(set(orders)) == 3, "every epoch should draw a new order"
    assert orders != [tuple(labels) for _, labels in other]
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(first, other))


def test_seeded_file_reader_repeats_and_shuffles(tmp_path):
    write_tiny_imagenet(tmp_path, np.random.default_rng())
    expected = load_split("tiny-imagenet", "train", root=tmp_path)
    reference = _reference_normalized(expected.images.numpy(), expected.info.mean, expected.info.std)
    source = dali_source("tiny-imagenet", "train", root=tmp_path)

    def orders(seed: int) -> list[list[int]]:
        """Per epoch, the index in the split of every image delivered (found by its pixels)."""
        batches = DaliTrainBatches(source, batch_size=4, device="cpu", seed=seed, augment=False)
        result = []
        for _ in range(3):
            images, labels, _ = _one_epoch(batches)
            distance = np.abs(images[:, None] - reference[None]).reshape(len(images), len(reference), -1).max(-1)
            index = distance.argmin(1)
            assert (distance.min(1) < 1e-5).all()
            np.testing.assert_array_equal(labels, expected.labels.numpy()[index])
            result.append(index.tolist())
        return result

    first = orders(11)
    assert first == orders(11)
    assert all(sorted(order) == list(range(len(source))) for order in first)
    assert len({tuple(order) for order in first + [list(range(len(source)))]}) == 4, "epochs should be shuffled"


def test_wrongly_sized_jpeg_is_named(tmp_path):
    from PIL import Image

    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    odd = fixture.test.files[2]
    Image.fromarray(np.random.default_rng().integers(0, 256, (48, 63, 3), dtype=np.uint8)).save(odd, quality=100)
    with pytest.raises(CorruptDataError) as caught:
        load_split_dali("tiny-imagenet", "test", root=tmp_path, batch_size=4)
    message = str(caught.value)
    assert str(odd) in message and "63x48" in message and "\n" not in message


def test_unreadable_jpeg_is_one_line_naming_the_folder(tmp_path):
    fixture = write_tiny_imagenet(tmp_path, np.random.default_rng())
    broken = fixture.train.files[4]
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(CorruptDataError) as caught:
        load_split_dali("tiny-imagenet", "train", root=tmp_path, batch_size=4)
    message = str(caught.value)
    assert str(fixture.folder / "train") in message and "--loader torch" in message and "\n" not in message


def test_missing_image_folder_reports_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError, match="tiny-imagenet train split not found"):
        load_split_dali("tiny-imagenet", "train", root=tmp_path)
