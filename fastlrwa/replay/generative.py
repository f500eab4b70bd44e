"""PRE-DFKD's generative replay: a VAE learns the stream of generated samples online and replays
samples decoded from its prior.

The loss weights and the latent size are fastlrwa's choices; the paper gives none. The defaults
(``kl_weight`` 1e-3, ``logit_weight`` 0.1) put the three terms on comparable scales for
unit-variance images: the reconstruction MSE is a per-element mean (about 1 for an untrained
VAE), the teacher-logit MAE a few units, and the KL a sum over the latent dimensions (hundreds of
nats once the posterior carries information).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.losses.distill import mae
from fastlrwa.replay.rng import canonical_device, rng_on
from fastlrwa.replay.vae import VAE


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions, mean over the batch."""
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=1)).mean()


def vae_loss(
    vae: VAE,
    teacher: nn.Module,
    images: Tensor,
    teacher_logits: Tensor,
    noise: Tensor,
    *,
    kl_weight: float,
    logit_weight: float,
) -> dict[str, Tensor]:
    """The generative-replay VAE loss on one batch, with its terms (0-dim tensors, for logging).

    ``loss = MSE(x_rec, x) + logit_weight * MAE(T(x_rec), t) + kl_weight * KL(q(z|x) || N(0, I))``.
    The teacher is frozen, but gradients flow through it into the decoder: reconstructions must
    keep what the teacher sees in a sample, not only its pixels.
    """
    reconstruction, mu, logvar = vae(images, noise)
    recon_mse = F.mse_loss(reconstruction, images)
    logit_mae = mae(teacher(reconstruction), teacher_logits)
    kl = gaussian_kl(mu, logvar)
    total = recon_mse + logit_weight * logit_mae + kl_weight * kl
    return {"vae/loss": total, "vae/recon_mse": recon_mse, "vae/logit_mae": logit_mae, "vae/kl": kl}


class GenerativeReplay:
    """The generative replay scheme (PRE-DFKD, Ours-2): one VAE step per generator step.

    Args:
        vae: the replay VAE; moved to ``device``.
        teacher: the frozen teacher; put in eval mode with gradients off (it is frozen for the
            whole run, this only makes it explicit).
        lr: the VAE's Adam learning rate.
        kl_weight, logit_weight: weights of the KL and teacher-logit terms of :func:`vae_loss`.
        replay_batch: samples per replay batch.
        warmup_steps: observed batches before replay starts (the trainer decides, e.g. one epoch).
        device: the training device.
        rng: draws the VAE's reparameterisation noise and the replay latents.
    """

    def __init__(
        self,
        vae: VAE,
        teacher: nn.Module,
        *,
        lr: float = 1e-3,
        kl_weight: float = 1e-3,
        logit_weight: float = 0.1,
        replay_batch: int = 64,
        warmup_steps: int = 72,
        device: torch.device | str,
        rng: torch.Generator | None = None,
    ):
        if not lr > 0:
            raise ConfigError(f"the replay VAE learning rate must be positive, got {lr}")
        if not (kl_weight >= 0 and logit_weight >= 0):
            raise ConfigError(f"the replay VAE loss weights must be >= 0, got kl {kl_weight} and logit {logit_weight}")
        if not isinstance(replay_batch, int) or replay_batch < 1:
            raise ConfigError(f"replay_batch={replay_batch!r} must be a positive number of samples")
        if not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ConfigError(f"the replay VAE warmup_steps={warmup_steps!r} must be a non-negative number of steps")
        self.device = canonical_device(device)
        self.vae = vae.to(self.device)
        self.teacher = teacher.eval().requires_grad_(False)
        self.kl_weight = kl_weight
        self.logit_weight = logit_weight
        self.replay_batch = replay_batch
        self.warmup_steps = warmup_steps
        self.optimizer = torch.optim.Adam(self.vae.parameters(), lr=lr)
        self._dtype = next(self.vae.parameters()).dtype
        self._rng = rng_on(self.device, rng)
        self.observed_steps = 0

    def is_ready(self) -> bool:
        """True once ``warmup_steps`` batches have been observed."""
        return self.observed_steps >= self.warmup_steps

    def sample(self) -> tuple[Tensor, Tensor]:
        """Decode z ~ N(0, I): (images [replay_batch, C, H, W], teacher logits [replay_batch, K]), no grad."""
        latents = torch.randn(self.replay_batch, self.vae.latent_dim, device=self.device, generator=self._rng)
        with torch.no_grad():
            images = self.vae.decode(latents)
            return images, self.teacher(images)

    def observe_generator_batch(self, images: Tensor, teacher_logits: Tensor) -> dict[str, Tensor]:
        """One Adam step of the VAE on the generator step's batch; returns the loss terms as 0-dim device tensors."""
        noise = torch.randn(images.shape[0], self.vae.latent_dim, device=self.device, generator=self._rng)
        with torch.enable_grad():
            terms = vae_loss(
                self.vae,
                self.teacher,
                # Under mixed precision the generator's images may arrive in bfloat16 or float16.
                images.detach().to(self._dtype),
                teacher_logits.detach().to(self._dtype),
                noise,
                kl_weight=self.kl_weight,
                logit_weight=self.logit_weight,
            )
            self.optimizer.zero_grad(set_to_none=True)
            terms["vae/loss"].backward()
        self.optimizer.step()
        self.observed_steps += 1
        return {name: value.detach() for name, value in terms.items()}

    def observe_student_batch(self, images: Tensor, teacher_logits: Tensor) -> None:
        """The VAE learns from the generator steps' batches only."""

    def end_epoch(self, epoch: int) -> None:
        """Nothing happens at epoch ends: the VAE learns at every generator step."""

    def state_dict(self) -> dict:
        """VAE weights, Adam state, random state and step count (references to live tensors: save at once)."""
        return {
            "vae": self.vae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self._rng.get_state(),
            "observed_steps": self.observed_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; the next losses and samples match an uninterrupted run."""
        missing = sorted({"vae", "optimizer", "rng", "observed_steps"} - set(state))
        if missing:
            raise CheckpointError(
                f"the generative replay state lacks {', '.join(missing)}; resume from a checkpoint fastlrwa wrote"
            )
        try:
            self.vae.load_state_dict(state["vae"])
            self.optimizer.load_state_dict(state["optimizer"])
            # map_location may have put this byte tensor on the device; set_state wants it on the CPU.
            self._rng.set_state(state["rng"].cpu())
        except (RuntimeError, ValueError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(
                f"the checkpoint's replay VAE does not fit this run ({first_line}); resume with the same "
                "--vae-latent, dataset and device"
            ) from error
        self.observed_steps = state["observed_steps"]
