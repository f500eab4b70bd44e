"""A test set of the user's own (``--test-data``): an ImageFolder tree or an .npz of x and y, read as raw pixels
at the dataset's input shape, refused in one line where it cannot be, and used by a run in place of the
dataset's test split (the teacher seeing it in its own normalisation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from foreign_teachers import save_three_ways, user_cnn
from PIL import Image

from conftest import TINY_TRAIN_FLAGS
from fastlrwa.cli import cli
from fastlrwa.data import dataset_info
from fastlrwa.data.split import CorruptDataError
from fastlrwa.data.user_test_set import load_test_data
from fastlrwa.errors import DataNotFoundError
from fastlrwa.models import load_checkpoint_with_meta

DIGITS = dataset_info("digits")
CIFAR = dataset_info("cifar10")


def _pixels(generator: torch.Generator, *shape: int) -> np.ndarray:
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8).numpy()


def _write_tree(root, images_by_folder: dict[str, list[np.ndarray]]) -> None:
    for folder, images in images_by_folder.items():
        (root / folder).mkdir(parents=True)
        for number, pixels in enumerate(images):
            Image.fromarray(pixels).save(root / folder / f"img{number}.png")


def test_an_image_folder_with_class_index_names_gives_those_labels_and_the_pixels(tmp_path):
    rng = torch.Generator().manual_seed(5)
    tree = {"2": [_pixels(rng, 32, 32) for _ in range(3)], "7": [_pixels(rng, 32, 32)], "9": [_pixels(rng, 32, 32)]}
    _write_tree(tmp_path, tree)
    (tmp_path / "7" / "notes.txt").write_text("not an image")
    split = load_test_data(tmp_path, DIGITS)
    assert split.labels.tolist() == [2, 2, 2, 7, 9]
    expected = np.stack([pixels for folder in ("2", "7", "9") for pixels in tree[folder]])
    assert split.images.dtype == torch.uint8 and split.images.shape == (5, 1, 32, 32)
    assert np.array_equal(split.images[:, 0].numpy(), expected)


def test_an_image_folder_of_other_names_is_in_sorted_order_and_rgb_becomes_grey(tmp_path):
    rng = torch.Generator().manual_seed(6)
    names = [f"class_{letter}" for letter in "jihgfedcba"]
    tree = {name: [_pixels(rng, 32, 32, 3)] for name in names}
    _write_tree(tmp_path, tree)
    split = load_test_data(tmp_path, DIGITS)
    assert split.labels.tolist() == list(range(10))
    for label, name in enumerate(sorted(names)):
        grey = np.asarray(Image.fromarray(tree[name][0]).convert("L"))
        assert np.array_equal(split.images[label, 0].numpy(), grey)


def test_an_image_folder_of_small_images_is_resized_to_the_input_size(tmp_path):
    rng = torch.Generator().manual_seed(7)
    small = _pixels(rng, 9, 11)
    _write_tree(tmp_path, {"4": [small]})
    split = load_test_data(tmp_path, DIGITS)
    expected = np.asarray(Image.fromarray(small).resize((32, 32), Image.BILINEAR))
    assert split.images.shape == (1, 1, 32, 32) and np.array_equal(split.images[0, 0].numpy(), expected)


def test_an_image_folder_of_unnamed_classes_must_have_one_per_class(tmp_path):
    rng = torch.Generator().manual_seed(8)
    _write_tree(tmp_path, {"cat": [_pixels(rng, 32, 32)], "dog": [_pixels(rng, 32, 32)]})
    with pytest.raises(CorruptDataError, match="2 class folders .* for 10 digits classes"):
        load_test_data(tmp_path, DIGITS)


def test_an_image_folder_with_a_damaged_image_names_it(tmp_path):
    rng = torch.Generator().manual_seed(9)
    _write_tree(tmp_path, {"1": [_pixels(rng, 32, 32)]})
    (tmp_path / "1" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CorruptDataError, match="broken.png: not a readable image"):
        load_test_data(tmp_path, DIGITS)


@pytest.mark.parametrize("layout", ["nhw", "nchw", "nhwc"])
def test_an_npz_of_uint8_pixels_in_any_layout_gives_the_same_images(tmp_path, layout):
    rng = torch.Generator().manual_seed(10)
    images = _pixels(rng, 6, 32, 32)
    stored = {"nhw": images, "nchw": images[:, None], "nhwc": images[..., None]}[layout]
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.int32)
    np.savez(tmp_path / "test.npz", x=stored, y=labels)
    split = load_test_data(tmp_path / "test.npz", DIGITS)
    assert np.array_equal(split.images[:, 0].numpy(), images)
    assert split.labels.dtype == torch.int64 and split.labels.tolist() == labels.tolist()


def test_an_npz_of_rgb_channels_last_floats_is_rounded_to_pixels(tmp_path):
    rng = torch.Generator().manual_seed(11)
    floats = torch.rand(4, 32, 32, 3, generator=rng, dtype=torch.float64).numpy()
    np.savez(tmp_path / "test.npz", x=floats, y=np.array([0, 9, 2, 2]))
    split = load_test_data(tmp_path / "test.npz", CIFAR)
    expected = np.clip(np.floor(floats * 255 + 0.5), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    assert split.images.shape == (4, 3, 32, 32) and np.array_equal(split.images.numpy(), expected)


def test_an_npz_of_small_images_is_resized_bilinearly(tmp_path):
    rng = torch.Generator().manual_seed(12)
    small = _pixels(rng, 2, 8, 8)
    np.savez(tmp_path / "test.npz", x=small, y=np.array([1, 2]))
    split = load_test_data(tmp_path / "test.npz", DIGITS)
    reference = F.interpolate(torch.from_numpy(small[:, None]).double(), size=(32, 32), mode="bilinear")
    assert (split.images.double() - reference).abs().max() <= 0.5 + 1e-9


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((2, 32, 32), np.uint8)}, "not y"),
        ({"images": np.zeros((2, 32, 32), np.uint8), "y": np.array([1, 2])}, "not x"),
        ({"x": np.full((2, 32, 32), 3.5), "y": np.array([1, 2])}, r"float pixels span 3.5\.\.3.5"),
        ({"x": np.zeros((2, 3, 32, 32), np.uint8), "y": np.array([1, 2])}, "1 channel"),
        ({"x": np.zeros((2, 32, 32), np.uint8), "y": np.array([1.0, 2.0])}, "integer class labels"),
        ({"x": np.zeros((2, 32, 32), np.uint8), "y": np.array([1, 10])}, r"labels span 1\.\.10"),
        ({"x": np.zeros((3, 32, 32), np.uint8), "y": np.array([1, 2])}, "3 images but labels"),
        ({"x": np.array([object(), object()]), "y": np.array([1, 2])}, "unreadable without pickle"),
    ],
)
def test_a_bad_npz_is_refused_in_one_line_naming_the_fix(tmp_path, arrays, message):
    np.savez(tmp_path / "test.npz", **arrays)
    with pytest.raises(CorruptDataError, match=message) as caught:
        load_test_data(tmp_path / "test.npz", DIGITS)
    assert "\n" not in str(caught.value) and "--test-data" in str(caught.value)


def test_a_missing_or_non_npz_path_is_refused(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such file or folder"):
        load_test_data(tmp_path / "nowhere", DIGITS)
    (tmp_path / "test.npz").write_bytes(b"plain bytes, not a zip")
    with pytest.raises(CorruptDataError, match="not an .npz archive"):
        load_test_data(tmp_path / "test.npz", DIGITS)


def _predictions(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("form", ["folder", "npz"])
def test_a_run_evaluates_on_the_users_test_set_with_the_teachers_normalisation(tmp_path, form):
    teacher = user_cnn(seed=4)
    paths = save_three_ways(teacher, tmp_path / "teacher")
    rng = torch.Generator().manual_seed(13)
    images = _pixels(rng, 23, 32, 32)
    labels = torch.randint(0, 10, (23,), generator=rng)
    if form == "npz":
        test_data = tmp_path / "mine.npz"
        np.savez(test_data, x=images, y=labels.numpy())
    else:
        test_data = tmp_path / "mine"
        tree: dict[str, list[np.ndarray]] = {}
        for pixels, label in zip(images, labels.tolist()):
            tree.setdefault(str(label), []).append(pixels)
        _write_tree(test_data, tree)
        order = torch.tensor(sorted(range(23), key=lambda row: labels[row].item()), dtype=torch.int64)
        images, labels = images[order.numpy()], labels[order]
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--teacher", str(paths["torchscript"]), "--teacher-mean", "0.4"]
    args += ["--teacher-std", "0.3", "--w-act", "0", "--test-data", str(test_data), *TINY_TRAIN_FLAGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    record = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    pixels = torch.from_numpy(images).unsqueeze(1).double() / 255
    student, _ = load_checkpoint_with_meta(out / "student.pt")
    student_classes = _predictions(student.eval(), ((pixels - DIGITS.mean[0]) / DIGITS.std[0]).float())
    teacher_classes = _predictions(teacher, ((pixels - 0.4) / 0.3).float())
    assert record["test_accuracy"] == pytest.approx(100 * (student_classes == labels).double().mean().item())
    assert record["agree_test"] == pytest.approx((student_classes == teacher_classes).double().mean().item())
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["config"]["data"]["test_data"] == str(test_data)
    assert recorded["teacher_accuracy"] == pytest.approx(100 * (teacher_classes == labels).double().mean().item())


def test_the_command_line_refuses_bad_test_data_in_one_line_before_training(tmp_path):
    paths = save_three_ways(user_cnn(seed=5), tmp_path / "teacher")
    (tmp_path / "mine.npz").write_bytes(b"not a zip")
    args = ["train", "--out", str(tmp_path / "run"), "--teacher", str(paths["torchscript"]), "--w-act", "0"]
    args += ["--test-data", str(tmp_path / "mine.npz"), *TINY_TRAIN_FLAGS]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --test-data") and "numpy.savez" in lines[0]
    assert not (tmp_path / "run").exists()
