"""``Generator.forward_chunks``: one batched call equal to separate train-mode forwards of its row blocks."""

from __future__ import annotations

import copy

import pytest
import torch

from fastlrwa.models import build_generator
from fastlrwa.models.batchnorm import train_batchnorm_per_chunk


def _generator(seed: int, dtype: torch.dtype, channels_last: bool, pixels: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    pixel_norm = ((0.3, 0.45, 0.5), (0.2, 0.3, 0.25)) if pixels else None
    generator = build_generator(latent_dim=11, channels=3, image_size=12, width=6, pixel_norm=pixel_norm)
    generator = generator.to(dtype).train()
    # Moved off their initial values, so that a missed running-statistics update shows.
    for layer in generator.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    return generator.to(memory_format=torch.channels_last) if channels_last else generator


@pytest.mark.parametrize("channels_last,pixels", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("chunks,rows", [(3, 7), (5, 4), (1, 9)])
def test_chunks_equal_separate_forwards_in_float64(chunks, rows, channels_last, pixels):
    generator = _generator(seed=chunks * 10 + rows, dtype=torch.float64, channels_last=channels_last, pixels=pixels)
    reference = copy.deepcopy(generator)
    for _ in range(2):  # the second call starts from the moved statistics and vectors
        z = torch.randn(chunks * rows, 11, dtype=torch.float64)
        images = generator.forward_chunks(z, chunks)
        with torch.no_grad():
            want = torch.cat([reference(block) for block in z.chunk(chunks)])
        assert images.shape == want.shape == (chunks * rows, 3, 12, 12) and not images.requires_grad
        torch.testing.assert_close(images, want, rtol=1e-10, atol=1e-10)
        # Each block normalised on its own: the images are not those of one forward of the whole batch.
        if chunks > 1:
            whole = copy.deepcopy(reference)
            with torch.no_grad():
                assert (whole(z) - want).abs().max() > 1e-3
    state, want_state = generator.state_dict(), reference.state_dict()
    assert state.keys() == want_state.keys()
    for name, value in want_state.items():
        torch.testing.assert_close(state[name], value, rtol=1e-10, atol=1e-12, msg=name)
    assert int(generator.project_norm.num_batches_tracked) == 2 * chunks


def test_chunks_in_bf16_close_to_float32_and_back_in_float32():
    generator = _generator(seed=4, dtype=torch.float32, channels_last=True)
    reference = copy.deepcopy(generator)
    generator.compute_dtype = torch.bfloat16
    z = torch.randn(4 * 8, 11)
    images = generator.forward_chunks(z, 4)
    with torch.no_grad():
        want = torch.cat([reference(block) for block in z.chunk(4)])
    assert images.dtype == torch.float32
    assert float((images - want).norm() / want.norm()) < 5e-2
    buffers = dict(generator.named_buffers())
    for name, value in reference.named_buffers():
        if value.is_floating_point():  # running statistics and spectral-norm vectors
            assert float((buffers[name] - value).norm() / value.norm()) < 5e-2, name


def test_eval_mode_chunks_are_one_forward():
    generator = _generator(seed=6, dtype=torch.float64, channels_last=False).eval()
    z = torch.randn(3 * 5, 11, dtype=torch.float64)
    with torch.no_grad():
        want = generator(z)
    torch.testing.assert_close(generator.forward_chunks(z, 3), want, rtol=0, atol=0)


def test_batchnorm_per_chunk_is_the_formula_and_refuses_bad_input():
    torch.manual_seed(8)
    layer = torch.nn.BatchNorm2d(5, eps=0.3, momentum=0.25).double().train()
    torch.nn.init.uniform_(layer.weight, 0.5, 1.5)
    torch.nn.init.uniform_(layer.bias, -1.0, 1.0)
    x = torch.randn(3 * 4, 5, 3, 2, dtype=torch.float64) * 2 + 1
    scales = [torch.tensor(s, dtype=torch.float64) for s in (0.5, 2.0, 1.25)]
    running_mean, running_var = layer.running_mean.clone(), layer.running_var.clone()
    with torch.no_grad():
        got = train_batchnorm_per_chunk(x, layer, 3, scales)
    for k, block in enumerate(x.chunk(3)):
        mean = block.mean(dim=(0, 2, 3))
        var = ((block - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
        n = block.numel() // 5
        normalised = (block - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 0.3)
        want = scales[k] * (layer.weight.view(1, -1, 1, 1) * normalised + layer.bias.view(1, -1, 1, 1))
        torch.testing.assert_close(got[4 * k : 4 * (k + 1)], want, rtol=1e-12, atol=1e-12)
        running_mean = 0.75 * running_mean + 0.25 * mean
        running_var = 0.75 * running_var + 0.25 * var * n / (n - 1)
    torch.testing.assert_close(layer.running_mean, running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.running_var, running_var, rtol=1e-12, atol=1e-12)
    assert int(layer.num_batches_tracked) == 3
    with pytest.raises(RuntimeError, match="without gradient"):
        train_batchnorm_per_chunk(x, layer, 3)
    with torch.no_grad(), pytest.raises(ValueError, match="do not split into 5 equal chunks"):
        train_batchnorm_per_chunk(x, layer, 5)
