"""VAE shapes, the generative-replay loss against its formula, online learning, sampling, resume."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.replay import VAE, GenerativeReplay, ReplayScheme, vae_loss

CLASSES = 13
LATENT = 9


def linear_teacher(channels: int, size: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, CLASSES))


def tiny_vae(channels: int = 3, size: int = 32, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(channels, size, latent_dim=LATENT, width=4)


def make_replay(seed: int = 0, vae_seed: int = 0, **overrides) -> GenerativeReplay:
    options = dict(kl_weight=0.01, logit_weight=0.5, replay_batch=5, warmup_steps=2, lr=3e-3)
    options.update(overrides)
    return GenerativeReplay(
        tiny_vae(seed=vae_seed),
        linear_teacher(3, 32),
        device="cpu",
        rng=torch.Generator().manual_seed(seed),
        **options,
    )


def fresh_batch(seed: int, teacher: nn.Module, batch: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return images, teacher(images)


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 32), (3, 64)])
def test_vae_shapes(channels, size):
    vae = VAE(channels, size)
    images = torch.randn(3, channels, size, size)
    reconstruction, mu, logvar = vae(images, torch.randn(3, 256))
    assert reconstruction.shape == images.shape
    assert mu.shape == logvar.shape == (3, 256)
    assert vae.decode(torch.randn(5, 256)).shape == (5, channels, size, size)


def test_vae_rejects_unsupported_images():
    with pytest.raises(ConfigError, match="channels"):
        VAE(2, 32)
    with pytest.raises(ConfigError, match="image sizes"):
        VAE(3, 48)


def test_vae_forward_uses_the_reparameterised_latent():
    vae = tiny_vae().double()
    images = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    noise = torch.randn(4, LATENT, dtype=torch.float64)
    reconstruction, mu, logvar = vae(images, noise)
    torch.testing.assert_close(reconstruction, vae.decode(mu + (logvar / 2).exp() * noise))


def test_vae_loss_equals_the_formula():
    vae = tiny_vae(channels=1).double()
    teacher = linear_teacher(1, 32).double()
    images = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    targets = torch.randn(5, CLASSES, dtype=torch.float64) * 3
    noise = torch.randn(5, LATENT, dtype=torch.float64)
    kl_weight, logit_weight = 0.37, 1.9

    terms = vae_loss(vae, teacher, images, targets, noise, kl_weight=kl_weight, logit_weight=logit_weight)

    mu, logvar = vae.encode(images)
    std = (logvar / 2).exp()
    reconstruction = vae.decode(mu + std * noise)
    recon_mse = ((reconstruction - images) ** 2).sum() / images.numel()
    logit_mae = (teacher(reconstruction) - targets).abs().sum() / targets.numel()
    posterior = torch.distributions.Normal(mu, std)
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(std))
    kl = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    torch.testing.assert_close(terms["vae/recon_mse"], recon_mse)
    torch.testing.assert_close(terms["vae/logit_mae"], logit_mae)
    torch.testing.assert_close(terms["vae/kl"], kl)
    torch.testing.assert_close(terms["vae/loss"], recon_mse + logit_weight * logit_mae + kl_weight * kl)


def test_logit_term_reaches_the_decoder_through_the_frozen_teacher():
    replay = make_replay()
    images, targets = fresh_batch(1, replay.teacher)
    noise = torch.randn(6, LATENT)
    terms = vae_loss(replay.vae, replay.teacher, images, targets, noise, kl_weight=0.0, logit_weight=1.0)
    decoder_weight = replay.vae.decoder[-1].weight
    (grad,) = torch.autograd.grad(terms["vae/logit_mae"], decoder_weight)
    assert grad.abs().sum() > 0
    assert all(not p.requires_grad for p in replay.teacher.parameters())
    assert not replay.teacher.training


def test_observe_reports_the_loss_of_the_step_it_takes():
    replay = make_replay(seed=8)
    images, targets = fresh_batch(2, replay.teacher)
    vae_before = copy.deepcopy(replay.vae)
    noise = torch.randn(6, LATENT, generator=torch.Generator().manual_seed(8))
    expected = vae_loss(vae_before, replay.teacher, images, targets, noise, kl_weight=0.01, logit_weight=0.5)

    logged = replay.observe_generator_batch(images, targets)

    assert set(logged) == {"vae/loss", "vae/recon_mse", "vae/logit_mae", "vae/kl"}
    for name, value in logged.items():
        assert value.dim() == 0 and not value.requires_grad
        torch.testing.assert_close(value, expected[name].detach())
    changed = [not torch.equal(a, b) for a, b in zip(replay.vae.parameters(), vae_before.parameters())]
    assert all(changed)


def test_observe_takes_half_precision_images_from_a_mixed_precision_generator():
    replay, reference = make_replay(seed=4), make_replay(seed=4)
    images, targets = fresh_batch(6, replay.teacher)
    low_precision = images.to(torch.bfloat16)
    logged = replay.observe_generator_batch(low_precision, targets)
    expected = reference.observe_generator_batch(low_precision.float(), targets)
    assert logged["vae/loss"].dtype == torch.float32
    torch.testing.assert_close(logged["vae/loss"], expected["vae/loss"], rtol=0, atol=0)


def test_a_few_observe_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(3)
    teacher = linear_teacher(3, 32)
    replay = GenerativeReplay(
        VAE(3, 32, latent_dim=LATENT, width=16), teacher, device="cpu", rng=torch.Generator().manual_seed(3)
    )
    # Smooth images (upsampled 4x4 noise), standardised like the generator's output: white noise
    # has no structure a small VAE could learn in a few steps.
    coarse = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    images = F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    images = (images - images.mean()) / images.std()
    with torch.no_grad():
        targets = teacher(images)
    noise = torch.randn(6, LATENT)

    def loss() -> torch.Tensor:
        with torch.no_grad():
            terms = vae_loss(replay.vae, teacher, images, targets, noise, kl_weight=1e-3, logit_weight=0.1)
            return terms["vae/loss"]

    before = loss()
    for _ in range(30):
        replay.observe_generator_batch(images, targets)
    assert loss() < 0.9 * before


def test_sample_decodes_prior_latents_and_labels_them_with_the_teacher():
    replay = make_replay(seed=6)
    images, logits = replay.sample()
    assert images.shape == (5, 3, 32, 32) and logits.shape == (5, CLASSES)
    assert not images.requires_grad and not logits.requires_grad
    latents = torch.randn(5, LATENT, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(images, replay.vae.decode(latents))
        torch.testing.assert_close(logits, replay.teacher(images))


def test_is_ready_after_warmup_steps():
    replay = make_replay(warmup_steps=3)
    assert isinstance(replay, ReplayScheme)
    images, targets = fresh_batch(5, replay.teacher)
    readiness = []
    for epoch in range(1, 5):
        replay.observe_generator_batch(images, targets)
        replay.end_epoch(epoch)
        readiness.append(replay.is_ready())
    assert readiness == [False, False, True, True]


def test_resume_gives_identical_next_losses_and_samples():
    original = make_replay(seed=10, vae_seed=1)
    teacher = original.teacher
    batches = [fresh_batch(20 + step, teacher) for step in range(5)]
    for batch in batches[:3]:
        original.observe_generator_batch(*batch)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_replay(seed=11, vae_seed=2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.observed_steps == 3

    for batch in batches[3:]:
        expected, got = original.observe_generator_batch(*batch), resumed.observe_generator_batch(*batch)
        for name in expected:
            assert torch.equal(expected[name], got[name]), name
    for expected, got in zip(original.sample(), resumed.sample()):
        assert torch.equal(expected, got)


def test_bad_settings_and_mismatched_state_are_clear_errors():
    with pytest.raises(ConfigError, match="replay_batch"):
        make_replay(replay_batch=0)
    with pytest.raises(ConfigError, match="weights"):
        make_replay(kl_weight=-1.0)
    state = make_replay().state_dict()
    other = GenerativeReplay(VAE(3, 32, latent_dim=LATENT + 1, width=4), linear_teacher(3, 32), device="cpu")
    with pytest.raises(CheckpointError, match="--vae-latent"):
        other.load_state_dict(state)
