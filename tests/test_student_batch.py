"""The student batch function: the generator and teacher forwards that feed a student step, as one function."""

from __future__ import annotations

import copy

import pytest
import torch

import fastlrwa.updates.student_batch as student_batch_module
from fastlrwa.models import build_generator, build_model
from fastlrwa.updates.student_batch import make_student_batch


def _networks(seed: int, dtype: torch.dtype = torch.float32):
    torch.manual_seed(seed)
    generator = build_generator(latent_dim=13, channels=3, image_size=12, width=6).to(dtype).train()
    teacher = build_model("wrn16_1", 7, in_channels=3, image_size=12).to(dtype).eval()
    return generator, teacher


def _reference(generator, teacher, z):
    """The loop's forwards written out: train-mode generator, eval-mode teacher, no gradient."""
    with torch.no_grad():
        images = generator(z)
        return images, teacher(images)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_is_the_two_forwards_and_moves_the_generator_statistics_once(dtype):
    generator, teacher = _networks(seed=3, dtype=dtype)
    reference_generator = copy.deepcopy(generator)
    batch = make_student_batch(generator, teacher, autocast_dtype=None, compile=False)
    for _ in range(3):
        z = torch.randn(9, 13, dtype=dtype)
        images, logits = batch(z)
        want_images, want_logits = _reference(reference_generator, teacher, z)
        assert images.dtype == logits.dtype == dtype and not images.requires_grad
        torch.testing.assert_close(images, want_images, rtol=0, atol=0)
        torch.testing.assert_close(logits, want_logits, rtol=0, atol=0)
    # Running statistics and spectral-norm vectors moved exactly as three train-mode forwards move them.
    for (name, got), want in zip(generator.state_dict().items(), reference_generator.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    assert int(generator.project_norm.num_batches_tracked) == 3


def test_bf16_autocast_batch_comes_back_in_float32_close_to_full_precision():
    generator, teacher = _networks(seed=5)
    full = make_student_batch(copy.deepcopy(generator), teacher, autocast_dtype=None, compile=False)
    mixed = make_student_batch(generator, teacher, autocast_dtype=torch.bfloat16, compile=False)
    z = torch.randn(8, 13)
    (images, logits), (want_images, want_logits) = mixed(z), full(z)
    assert images.dtype == logits.dtype == torch.float32
    assert float((logits - want_logits).norm() / want_logits.norm()) < 5e-2
    assert float((images - want_images).norm() / want_images.norm()) < 5e-2


def test_compiled_batch_is_one_graph_and_matches_eager(monkeypatch):
    """fullgraph=True: a graph break in the generator or the teacher would be an error. Traced with
    AOTAutograd without Inductor's code generation, which the slow compiled-run test covers."""
    traced = []

    def compiled(fn, **options):
        traced.append(options)
        return torch.compile(fn, **{**options, "backend": "aot_eager"})

    monkeypatch.setattr(student_batch_module, "compiled", compiled)
    generator, teacher = _networks(seed=7)
    eager_generator = copy.deepcopy(generator)
    batch = make_student_batch(generator, teacher, autocast_dtype=None, compile=True)
    eager = make_student_batch(eager_generator, teacher, autocast_dtype=None, compile=False)
    assert traced == [{"fullgraph": True, "dynamic": False}]
    for _ in range(2):
        z = torch.randn(10, 13)
        for got, want in zip(batch(z), eager(z)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for name, value in eager_generator.state_dict().items():
        torch.testing.assert_close(generator.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("compile", [False, True])
def test_chunked_batch_is_the_separate_batches(monkeypatch, compile):
    """The student phase's batches in one call (eager: into one tensor; compiled: concatenated, traced with
    AOTAutograd) equal to separate calls, in float64."""
    monkeypatch.setattr(
        student_batch_module, "compiled", lambda fn, **options: torch.compile(fn, **{**options, "backend": "aot_eager"})
    )
    generator, teacher = _networks(seed=9, dtype=torch.float64)
    reference_generator = copy.deepcopy(generator)
    batch = make_student_batch(generator, teacher, autocast_dtype=None, compile=compile)
    z = torch.randn(3 * 6, 13, dtype=torch.float64)
    images, logits = batch(z, 3)
    want = [_reference(reference_generator, teacher, block) for block in z.chunk(3)]
    torch.testing.assert_close(images, torch.cat([w[0] for w in want]), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(logits, torch.cat([w[1] for w in want]), rtol=1e-9, atol=1e-9)
    for (name, got), value in zip(generator.state_dict().items(), reference_generator.state_dict().values()):
        torch.testing.assert_close(got, value, rtol=1e-9, atol=1e-12, msg=name)
