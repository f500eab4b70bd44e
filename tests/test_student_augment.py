"""Augmented student batches: random_affine draws pixel-space rotations, mirrors and whole-pixel shifts,
affine_warp resamples as bilinear interpolation with the border repeated (written out in float64 here), and the
student batch trains on the augmented images with the teacher's logits on them."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import assert_train_refused_in_one_line
from fastlrwa.data import affine_warp, random_affine
from fastlrwa.models import build_generator, build_model
from fastlrwa.updates.options import StudentAugmentOptions
from fastlrwa.updates.student_batch import make_student_batch


def _parameters(theta: torch.Tensor, height: int, width: int):
    """Angle, mirror sign and pixel offsets of each map, read back by inverting the matrix's written-out form."""
    t = theta.double().numpy()
    cos, sin = t[:, 1, 1], -t[:, 0, 1] * width / height
    sign = t[:, 0, 0] / cos
    return cos, sin, sign, t[:, 0, 2] * width / 2, t[:, 1, 2] * height / 2


def _bilinear_border(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``image`` [C, H, W] sampled at fractional pixel positions, coordinates clamped to the image first."""
    _, h, w = image.shape
    rows, cols = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = rows - r0, cols - c0
    return (
        image[:, r0, c0] * (1 - fr) * (1 - fc)
        + image[:, r0, c1] * (1 - fr) * fc
        + image[:, r1, c0] * fr * (1 - fc)
        + image[:, r1, c1] * fr * fc
    )


@pytest.mark.parametrize(("height", "width"), [(9, 13), (12, 7), (28, 28)])
def test_warp_is_a_pixel_space_rotation_mirror_and_shift_sampled_bilinearly(height, width):
    rng = torch.Generator().manual_seed(11)
    images = torch.randn(6, 3, height, width, dtype=torch.float64)
    theta = random_affine(6, height, width, shift=2, rotate=35.0, flip=True, device=torch.device("cpu"), rng=rng)
    cos, sin, sign, dx, dy = _parameters(theta, height, width)
    np.testing.assert_allclose(cos**2 + sin**2, 1.0, atol=1e-6)  # a rotation in pixels, whatever the aspect
    assert np.all(np.abs(np.arctan2(sin, cos)) <= math.radians(35.0) + 1e-6)
    np.testing.assert_allclose(np.abs(sign), 1.0, atol=1e-6)
    np.testing.assert_allclose(dx, np.round(dx), atol=1e-5)
    assert np.all(np.abs(np.round(dx)) <= 2) and np.all(np.abs(np.round(dy)) <= 2)

    out = affine_warp(images, theta).numpy()
    v, u = np.meshgrid(np.arange(height) - (height - 1) / 2, np.arange(width) - (width - 1) / 2, indexing="ij")
    for n in range(6):
        source_u = cos[n] * sign[n] * u - sin[n] * v + np.round(dx[n])
        source_v = sin[n] * sign[n] * u + cos[n] * v + np.round(dy[n])
        want = _bilinear_border(images[n].numpy(), source_v + (height - 1) / 2, source_u + (width - 1) / 2)
        np.testing.assert_allclose(out[n], want, rtol=0, atol=1e-5)


def test_shifts_and_mirrors_without_rotation_move_pixels_unchanged():
    height, width, shift = 7, 11, 3
    images = torch.randn(400, 2, height, width)
    theta = random_affine(
        400, height, width, shift=shift, rotate=0.0, flip=True, device=torch.device("cpu"), rng=torch.Generator()
    )
    out = affine_warp(images, theta)
    seen = set()
    rows, cols = np.arange(height), np.arange(width)
    for n in range(400):
        image, got = images[n].numpy(), out[n].numpy()
        matches = [
            (dy, dx, mirror)
            for dy in range(-shift, shift + 1)
            for dx in range(-shift, shift + 1)
            for mirror in (False, True)
            if np.allclose(
                got,
                image[:, np.clip(rows + dy, 0, height - 1)][
                    :, :, np.clip((width - 1 - cols if mirror else cols) + dx, 0, width - 1)
                ],
                rtol=0,
                atol=1e-5,
            )
        ]
        assert matches, f"sample {n} is no whole-pixel shift of its image"
        seen.update(matches)
    # Every offset and both orientations occur (49 x 2 cases, 400 draws: missing one has odds of ~1e-2 at most;
    # the seed is the default generator's first draw, fixed).
    assert {(dy, dx) for dy, dx, _ in seen} == {(a, b) for a in range(-3, 4) for b in range(-3, 4)}
    assert {mirror for *_, mirror in seen} == {False, True}


def _networks(seed: int):
    torch.manual_seed(seed)
    generator = build_generator(latent_dim=13, channels=3, image_size=12, width=6).train()
    teacher = build_model("wrn16_1", 7, in_channels=3, image_size=12).eval()
    return generator, teacher


def test_augmented_batch_trains_on_the_warped_images_with_the_teachers_logits_on_them():
    generator, teacher = _networks(seed=5)
    plain_generator = copy.deepcopy(generator)
    options = StudentAugmentOptions(shift=2, rotate=20.0, flip=True)
    rng = torch.Generator().manual_seed(3)
    batch = make_student_batch(generator, teacher, autocast_dtype=None, compile=False, augment=options, rng=rng)
    replay_rng = torch.Generator().manual_seed(3)
    for _ in range(2):
        z = torch.randn(9, 13)
        images, logits = batch(z)
        with torch.no_grad():
            generated = plain_generator(z)
            theta = random_affine(9, 12, 12, shift=2, rotate=20.0, flip=True, device=z.device, rng=replay_rng)
            torch.testing.assert_close(images, affine_warp(generated, theta), rtol=0, atol=0)
            torch.testing.assert_close(logits, teacher(images), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(images, generated, atol=1e-3)


def test_no_augmentation_draws_no_random_numbers_and_keeps_the_images():
    generator, teacher = _networks(seed=6)
    plain_generator = copy.deepcopy(generator)
    rng = torch.Generator().manual_seed(4)
    before = rng.get_state()
    batch = make_student_batch(
        generator,
        teacher,
        autocast_dtype=None,
        compile=False,
        augment=StudentAugmentOptions(),
        rng=rng,
    )
    z = torch.randn(5, 13)
    images, _ = batch(z)
    with torch.no_grad():
        torch.testing.assert_close(images, plain_generator(z), rtol=0, atol=0)
    assert torch.equal(rng.get_state(), before)


@pytest.mark.parametrize(
    ("flags", "named"),
    [(("--augment-rotate", "200"), "--augment-rotate"), (("--augment-shift", "-1"), "--augment-shift")],
)
def test_out_of_range_augmentation_is_refused_in_one_line(flags, named, tmp_path):
    assert_train_refused_in_one_line(tmp_path, flags, named)
