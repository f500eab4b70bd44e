"""The paper's generator: structure, shapes, output standardisation, gradients, torch.func."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, grad

from fastlrwa.errors import ConfigError
from fastlrwa.models import Generator, build_generator


def generator_parameter_count(latent: int, channels: int, size: int) -> int:
    base = (size // 4) ** 2
    return (
        latent * 128 * base
        + 128 * base  # Linear(latent -> 128*(s/4)^2)
        + 2 * 128  # BN(128)
        + 128 * 128 * 9
        + 128  # spectral-normed conv 128->128 (one weight, stored as ".original")
        + 2 * 128  # BN(128, eps 0.8)
        + 128 * 64 * 9
        + 64  # spectral-normed conv 128->64
        + 2 * 64  # BN(64, eps 0.8)
        + 64 * channels * 9
        + channels  # spectral-normed conv 64->C
    )  # the final BN has no affine parameters


@pytest.mark.parametrize("latent,channels,size,batch", [(1000, 3, 32, 5), (1000, 1, 32, 3), (256, 3, 64, 3)])
def test_shapes_and_parameter_count(latent: int, channels: int, size: int, batch: int) -> None:
    generator = build_generator(latent_dim=latent, channels=channels, image_size=size)
    assert isinstance(generator, Generator) and generator.latent_dim == latent
    images = generator(torch.randn(batch, latent))
    assert images.shape == (batch, channels, size, size)
    assert sum(p.numel() for p in generator.parameters()) == generator_parameter_count(latent, channels, size)


def test_output_is_standardised_by_a_final_batchnorm_without_affine() -> None:
    generator = build_generator(latent_dim=100, channels=3, image_size=32).train()
    last = list(generator.modules())[-1]
    assert isinstance(last, nn.BatchNorm2d) and not last.affine and last.weight is None
    tanh = next(m for m in generator.modules() if isinstance(m, nn.Tanh))
    captured = {}
    tanh.register_forward_hook(lambda module, inputs, output: captured.update(tanh=output.detach().double()))
    images = generator(torch.randn(7, 100)).detach().double()
    assert captured["tanh"].abs().max() <= 1
    # Train-mode BatchNorm: (t - mean) / sqrt(var + 1e-5) per channel, with biased batch statistics.
    tanh_mean = captured["tanh"].mean(dim=(0, 2, 3), keepdim=True)
    tanh_var = captured["tanh"].var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    expected = (captured["tanh"] - tanh_mean) / torch.sqrt(tanh_var + 1e-5)
    torch.testing.assert_close(images, expected, rtol=1e-4, atol=1e-4)


def test_pixels_output_is_tanh_read_as_pixels_in_the_datasets_normalisation() -> None:
    mean = tuple(torch.empty(3).uniform_(0.2, 0.6).tolist())
    std = tuple(torch.empty(3).uniform_(0.15, 0.4).tolist())
    generator = build_generator(latent_dim=23, channels=3, image_size=20, width=10, pixel_norm=(mean, std)).train()
    assert not any(isinstance(m, nn.BatchNorm2d) and not m.affine for m in generator.modules())
    assert not any(name.startswith("decode.10") for name in generator.state_dict())
    tanh = next(m for m in generator.modules() if isinstance(m, nn.Tanh))
    captured = {}
    tanh.register_forward_hook(lambda module, inputs, output: captured.update(tanh=output.detach().double()))
    images = generator(torch.randn(9, 23)).detach().double()
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(images, ((captured["tanh"] + 1) / 2 - m) / s, rtol=1e-5, atol=1e-5)
    # Every value is one a real image in [0, 1] can take, and the batch is not standardised.
    assert (images >= -m / s - 1e-5).all() and (images <= (1 - m) / s + 1e-5).all()


def test_pixels_output_needs_a_mean_and_std_per_channel() -> None:
    with pytest.raises(ConfigError, match="each of the 3 channels"):
        build_generator(latent_dim=8, channels=3, image_size=8, pixel_norm=((0.5,), (0.25,)))


def test_inner_batchnorms_use_the_authors_eps_and_every_conv_is_spectrally_normalised() -> None:
    generator = build_generator(latent_dim=100, channels=3, image_size=32)
    eps = [m.eps for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert eps == [1e-5, 0.8, 0.8, 1e-5]
    convs = [m for m in generator.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(128, 128), (128, 64), (64, 3)]
    assert all(hasattr(c, "parametrizations") for c in convs)
    for _ in range(3):  # train-mode forwards run the power iteration
        generator(torch.randn(4, 100))
    generator.eval()
    for conv in convs:
        original = conv.parametrizations.weight.original.detach().flatten(1)
        u = conv.parametrizations.weight[0]._u
        v = conv.parametrizations.weight[0]._v
        estimate = u @ original @ v  # the power-iteration estimate of the largest singular value
        torch.testing.assert_close(conv.weight.detach().flatten(1), original / estimate)


def test_power_iteration_is_the_hook_versions_the_authors_use() -> None:
    """Against ``torch.nn.utils.spectral_norm`` (the authors'), started from the same u, v and weight:
    v = N(W^T u) before u = N(W v) at every training forward, sigma = u^T W v, no warm-up iterations."""
    generator = build_generator(latent_dim=16, channels=3, image_size=16, width=10).train()
    ours = generator.decode[5]
    reference = nn.Conv2d(ours.in_channels, ours.out_channels, kernel_size=3, padding=1).double()
    reference = torch.nn.utils.spectral_norm(reference)
    parametrization = ours.parametrizations.weight[0]
    with torch.no_grad():
        reference.weight_orig.copy_(ours.parametrizations.weight.original)
        reference.bias.copy_(ours.bias)
        reference.weight_u.copy_(parametrization._u)
        reference.weight_v.copy_(parametrization._v)
    ours.double()
    for _ in range(4):
        x = torch.randn(3, ours.in_channels, 5, 7, dtype=torch.float64)
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(parametrization._u, reference.weight_u, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(parametrization._v, reference.weight_v, rtol=1e-12, atol=1e-12)
    # By hand from the stored vectors: one more iteration, v first.
    w = ours.parametrizations.weight.original.detach().flatten(1)
    u0 = parametrization._u.clone()
    v1 = w.t() @ u0
    v1 = v1 / v1.norm()
    u1 = w @ v1
    u1 = u1 / u1.norm()
    weight = ours.weight.detach()
    torch.testing.assert_close(weight.flatten(1), w / (u1 @ w @ v1), rtol=1e-12, atol=1e-12)


def test_weights_start_uniform_in_the_authors_range_with_zero_biases() -> None:
    generator = build_generator(latent_dim=200, channels=3, image_size=32, width=64)
    layers = [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4
    for layer in layers:
        weight = layer.parametrizations.weight.original if hasattr(layer, "parametrizations") else layer.weight
        assert weight.abs().max() <= 0.08
        # U(-0.08, 0.08): mean 0, standard deviation 0.08 / sqrt(3), within sampling error.
        n = weight.numel()
        assert abs(weight.mean().item()) < 4 * 0.08 / (3 * n) ** 0.5
        assert abs(weight.std().item() - 0.08 / 3**0.5) < 0.1 * 0.08 / 3**0.5
        assert torch.count_nonzero(layer.bias) == 0
    # The spectral-norm vectors start as normalised draws.
    for conv in layers[1:]:
        parametrization = conv.parametrizations.weight[0]
        torch.testing.assert_close(parametrization._u.norm(), torch.tensor(1.0))
        torch.testing.assert_close(parametrization._v.norm(), torch.tensor(1.0))


def test_gradient_reaches_every_parameter() -> None:
    generator = build_generator(latent_dim=64, channels=3, image_size=32).train()
    images = generator(torch.randn(5, 64))
    (images * torch.randn_like(images)).sum().backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_torch_func_gradient_matches_autograd() -> None:
    generator = build_generator(latent_dim=32, channels=1, image_size=32).train()
    z = torch.randn(5, 32)
    weights = torch.randn(5, 1, 32, 32)
    params = {name: p.detach() for name, p in generator.named_parameters()}
    buffers = {name: b.clone() for name, b in generator.named_buffers()}

    def loss(p: dict, b: dict) -> torch.Tensor:
        return (functional_call(generator, (p, b), (z,)) * weights).sum()

    func_gradients = grad(loss)(params, {name: b.clone() for name, b in buffers.items()})
    (generator(z) * weights).sum().backward()
    for name, parameter in generator.named_parameters():
        torch.testing.assert_close(func_gradients[name], parameter.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [30, 0])
def test_bad_image_size_is_a_config_error(size: int) -> None:
    with pytest.raises(ConfigError, match="image_size"):
        build_generator(latent_dim=10, channels=3, image_size=size)


def _twins(dtype: torch.dtype | None, width: int = 12, size: int = 12) -> tuple[Generator, Generator]:
    """The same generator twice: one in float64 (the reference), one computing in ``dtype``."""
    torch.manual_seed(7)
    computing = build_generator(latent_dim=9, channels=3, image_size=size, width=width)
    reference = build_generator(latent_dim=9, channels=3, image_size=size, width=width).double()
    reference.load_state_dict({k: v.double() for k, v in computing.state_dict().items()})
    computing.compute_dtype = dtype
    return computing.to(memory_format=torch.channels_last), reference


def test_channels_last_computes_what_contiguous_float64_does() -> None:
    computing, reference = _twins(None)
    z = torch.randn(13, 9)
    images = computing(z)
    assert images.dtype is torch.float32
    torch.testing.assert_close(images.double(), reference(z.double()), rtol=1e-4, atol=1e-4)


def test_a_bf16_generator_returns_float32_images_close_to_float64_and_float32_gradients() -> None:
    computing, reference = _twins(torch.bfloat16)
    z = torch.randn(17, 9)
    images = computing(z)
    expected = reference(z.double())
    assert images.dtype is torch.float32
    error = (images.double() - expected).abs()
    # bf16 keeps 8 significant bits (relative rounding 2^-9); the standardised images are O(1)
    assert error.mean() < 0.03 and error.max() < 0.3, (error.mean(), error.max())
    assert torch.corrcoef(torch.stack([images.double().flatten(), expected.flatten()]))[0, 1] > 0.999
    weights = torch.randn_like(expected)
    (images * weights.float()).sum().backward()
    (expected * weights).sum().backward()
    for (name, got), want in zip(computing.named_parameters(), reference.parameters()):
        assert got.grad is not None and got.grad.dtype is torch.float32, name
        if want.grad.norm() < 1e-9:  # a conv bias ahead of a BatchNorm, which cancels it: both gradients are noise
            continue
        cosine = torch.nn.functional.cosine_similarity(got.grad.double().flatten(), want.grad.flatten(), dim=0)
        assert cosine > 0.99, (name, cosine)


def test_without_its_own_dtype_the_generator_follows_the_runs_autocast() -> None:
    computing, _ = _twins(None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert computing(torch.randn(5, 9)).dtype is torch.bfloat16


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist"])
def test_a_pixels_run_builds_its_generator_in_its_datasets_normalisation(preset: str) -> None:
    from fastlrwa.config.input_space import run_input
    from fastlrwa.config.presets import train_config
    from fastlrwa.trainer.build import run_generator

    config = train_config(preset, {"generator.output": "pixels"})
    info = run_input(config.data, config.teacher)
    generator = run_generator(config, info).train()
    images = generator(torch.randn(5, config.generator.latent_dim)).detach().double()
    low, high = -info.mean[0] / info.std[0], (1 - info.mean[0]) / info.std[0]
    assert (images >= low - 1e-5).all() and (images <= high + 1e-5).all() and images.std() > 0
    standardised = run_generator(train_config(preset), info)
    assert isinstance(list(standardised.modules())[-1], nn.BatchNorm2d)
