"""MemoryBankReplay: the push schedule, what gets pushed, resume."""

from __future__ import annotations

import io

import pytest
import torch

from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.replay import MemoryBankReplay, ReplayRing, ReplayScheme

SLOT_SIZE = 5
IMAGE_SHAPE = (1, 7, 9)
CLASSES = 11
BATCH = 12


def make_bank(push_every: int, slots: int = 4, seed: int = 0) -> MemoryBankReplay:
    ring = ReplayRing(slots, SLOT_SIZE, IMAGE_SHAPE, CLASSES, "cpu", rng=torch.Generator().manual_seed(seed))
    return MemoryBankReplay(ring, push_every=push_every)


def epoch_batches(epochs: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(BATCH, *IMAGE_SHAPE, generator=data), torch.randn(BATCH, CLASSES, generator=data))
        for _ in range(epochs)
    ]


def test_is_a_replay_scheme():
    assert isinstance(make_bank(push_every=5), ReplayScheme)


def test_end_epoch_pushes_the_last_student_batch_on_the_authors_schedule():
    """The authors push at ``epoch % push_every == 0`` with epochs counted from 0: after epochs 1, 4, 7, 10."""
    bank = make_bank(push_every=3)
    batches = epoch_batches(10, seed=1)
    filled_after = []
    for epoch, (images, logits) in enumerate(batches, start=1):
        # Generator batches are never stored; of the student batches only the epoch's last may be pushed.
        assert bank.observe_generator_batch(torch.randn(BATCH, *IMAGE_SHAPE), torch.randn(BATCH, CLASSES)) == {}
        bank.observe_student_batch(torch.randn(BATCH, *IMAGE_SHAPE), torch.randn(BATCH, CLASSES))
        bank.observe_student_batch(images, logits)
        bank.observe_generator_batch(torch.randn(BATCH, *IMAGE_SHAPE), torch.randn(BATCH, CLASSES))
        bank.end_epoch(epoch)
        filled_after.append(bank.ring.filled)
        assert bank.is_ready()
    assert filled_after == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    state = bank.ring.state_dict()
    for slot, epoch in enumerate([1, 4, 7, 10]):
        images, logits = batches[epoch - 1]
        assert torch.equal(state["images"][slot], images[:SLOT_SIZE])
        assert torch.equal(state["logits"][slot], logits[:SLOT_SIZE])


def test_sample_returns_a_pushed_slot():
    bank = make_bank(push_every=1)
    batches = epoch_batches(2, seed=2)
    for epoch, batch in enumerate(batches, start=1):
        bank.observe_student_batch(*batch)
        bank.end_epoch(epoch)
    for _ in range(10):
        images, logits = bank.sample()
        owner = [i for i, (batch_images, _) in enumerate(batches) if torch.equal(images, batch_images[:SLOT_SIZE])]
        assert len(owner) == 1
        assert torch.equal(logits, batches[owner[0]][1][:SLOT_SIZE])


def test_observe_drops_the_autograd_graph():
    bank = make_bank(push_every=1)
    weight = torch.randn(BATCH, 1, 1, 1, requires_grad=True)
    images = weight * torch.randn(BATCH, *IMAGE_SHAPE)
    bank.observe_student_batch(images, torch.randn(BATCH, CLASSES))
    bank.end_epoch(1)
    pushed, _ = bank.sample()
    assert not pushed.requires_grad
    assert torch.equal(pushed, images.detach()[:SLOT_SIZE])


def test_resume_between_the_last_step_and_the_push_is_exact():
    batches = epoch_batches(6, seed=3)

    def run(resume_after_epoch: int | None) -> list[torch.Tensor]:
        bank = make_bank(push_every=2, seed=4)
        samples = []
        for epoch, batch in enumerate(batches, start=1):
            bank.observe_student_batch(*batch)
            if epoch == resume_after_epoch:
                buffer = io.BytesIO()
                torch.save(bank.state_dict(), buffer)
                buffer.seek(0)
                bank = make_bank(push_every=2, seed=77)
                bank.load_state_dict(torch.load(buffer, weights_only=True))
            bank.end_epoch(epoch)
            if bank.is_ready():
                samples.append(torch.cat([t.flatten() for t in bank.sample()]).clone())
        return samples

    uninterrupted = run(None)
    assert len(uninterrupted) == 6  # pushes after epochs 1, 3 and 5: something to replay from epoch 1 on
    for epoch in (1, 2, 3):
        resumed = run(epoch)
        assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed, strict=True))


def test_bad_push_every_and_mismatched_state_are_clear_errors():
    with pytest.raises(ConfigError, match="push_every"):
        make_bank(push_every=0)
    state = make_bank(push_every=5).state_dict()
    with pytest.raises(CheckpointError, match="--memory-push-every"):
        make_bank(push_every=3).load_state_dict(state)
