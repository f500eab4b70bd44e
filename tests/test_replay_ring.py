"""ReplayRing: wrap-around, slot sampling, resume, tier selection, bad input."""

from __future__ import annotations

import io

import pytest
import torch

import fastlrwa.replay.ring as ring_module
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.replay.ring import ReplayRing, ring_storage_bytes, uses_host_tier

SLOT_SIZE = 7
IMAGE_SHAPE = (3, 5, 6)
CLASSES = 13
BATCH = 9


def random_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(BATCH, *IMAGE_SHAPE, generator=generator)
    logits = torch.randn(BATCH, CLASSES, generator=generator) * 4
    return images, logits


def make_ring(slots: int, seed: int = 0) -> ReplayRing:
    return ReplayRing(slots, SLOT_SIZE, IMAGE_SHAPE, CLASSES, "cpu", rng=torch.Generator().manual_seed(seed))


def roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def slot_of(images: torch.Tensor, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    matches = [i for i, (batch, _) in enumerate(batches) if torch.equal(images, batch[:SLOT_SIZE])]
    assert len(matches) == 1, "a sample must be exactly one pushed slot"
    return matches[0]


@pytest.fixture
def host_tier(monkeypatch):
    """Force the pinned-host tier; on a CPU device it runs its synchronous copy path."""
    monkeypatch.setattr(ring_module, "uses_host_tier", lambda *args: True)


def test_wraparound_keeps_the_newest_batches_in_ring_order():
    slots = 4
    ring = make_ring(slots)
    data = torch.Generator().manual_seed(11)
    batches = [random_batch(data) for _ in range(slots + 3)]
    for images, logits in batches:
        ring.push(images, logits)

    assert ring.filled == slots
    assert ring.next_slot == 3
    state = ring.state_dict()
    # Batches 4, 5, 6 overwrote slots 0, 1, 2; slot 3 still holds batch 3.
    for slot, batch_index in enumerate([4, 5, 6, 3]):
        images, logits = batches[batch_index]
        assert torch.equal(state["images"][slot], images[:SLOT_SIZE])
        assert torch.equal(state["logits"][slot], logits[:SLOT_SIZE])


@pytest.mark.parametrize("tier", ["device", "host"])
def test_sample_is_one_filled_slot_with_its_own_logits(tier, request):
    if tier == "host":
        request.getfixturevalue("host_tier")
    ring = make_ring(slots=5, seed=3)
    assert ring.host_tier == (tier == "host")
    data = torch.Generator().manual_seed(12)
    batches = [random_batch(data) for _ in range(3)]
    for images, logits in batches:
        ring.push(images, logits)

    draws = 600
    counts = [0, 0, 0]
    for _ in range(draws):
        images, logits = ring.sample()
        assert images.shape == (SLOT_SIZE, *IMAGE_SHAPE)
        assert logits.shape == (SLOT_SIZE, CLASSES)
        slot = slot_of(images, batches)
        assert torch.equal(logits, batches[slot][1][:SLOT_SIZE])
        counts[slot] += 1
    # Uniform over the 3 filled slots: 200 expected each, sd about 11.5.
    assert all(150 < count < 250 for count in counts), counts


def test_slot_index_follows_the_given_generator():
    ring = make_ring(slots=6, seed=21)
    data = torch.Generator().manual_seed(13)
    batches = [random_batch(data) for _ in range(4)]
    for images, logits in batches:
        ring.push(images, logits)
    reference = torch.Generator().manual_seed(21)
    for _ in range(30):
        expected = int(torch.randint(4, (1,), generator=reference))
        images, _ = ring.sample()
        assert slot_of(images, batches) == expected


@pytest.mark.parametrize("tier", ["device", "host"])
def test_resume_at_any_point_gives_the_same_future(tier, request):
    if tier == "host":
        request.getfixturevalue("host_tier")
    data = torch.Generator().manual_seed(14)
    batches = [random_batch(data) for _ in range(8)]

    def run(resume: bool) -> list[torch.Tensor]:
        ring = make_ring(slots=2, seed=5)
        seen = []
        for index, (images, logits) in enumerate(batches):
            ring.push(images, logits)
            if resume:
                state = roundtrip(ring.state_dict())
                ring = make_ring(slots=2, seed=99)
                ring.push(*batches[-1 - index])
                ring.load_state_dict(state)
            for _ in range(3):
                images_out, logits_out = ring.sample()
                seen.append(torch.cat([images_out.flatten(), logits_out.flatten()]).clone())
        return seen

    uninterrupted, resumed = run(resume=False), run(resume=True)
    assert len(uninterrupted) == len(resumed) == 24
    for expected, got in zip(uninterrupted, resumed):
        assert torch.equal(expected, got)


def test_state_dict_holds_only_filled_slots_and_counters():
    ring = make_ring(slots=5)
    data = torch.Generator().manual_seed(15)
    for _ in range(2):
        ring.push(*random_batch(data))
    state = roundtrip(ring.state_dict())
    assert state["images"].shape == (2, SLOT_SIZE, *IMAGE_SHAPE)
    assert state["logits"].shape == (2, SLOT_SIZE, CLASSES)
    assert (state["filled"], state["next_slot"]) == (2, 2)


def test_storage_bytes_and_tier_selection_by_budget():
    nbytes = ring_storage_bytes(10, 64, (3, 32, 32), 100, torch.float16)
    assert nbytes == 10 * 64 * (3 * 32 * 32 * 2 + 100 * 4)
    cuda = torch.device("cuda", 0)
    assert uses_host_tier(nbytes, cuda, nbytes - 1)
    assert not uses_host_tier(nbytes, cuda, nbytes)
    assert not uses_host_tier(nbytes, cuda, None)
    assert not uses_host_tier(nbytes, torch.device("cpu"), 1)


def test_cpu_ring_over_budget_keeps_storage_where_it_is():
    ring = ReplayRing(3, SLOT_SIZE, IMAGE_SHAPE, CLASSES, "cpu", device_budget_bytes=1)
    assert not ring.host_tier
    ring.push(*random_batch(torch.Generator().manual_seed(16)))
    images, _ = ring.sample()
    assert images.device.type == "cpu"


def test_push_smaller_than_slot_size_is_a_clear_config_error():
    ring = make_ring(slots=3)
    images, logits = random_batch(torch.Generator().manual_seed(17))
    with pytest.raises(ConfigError, match="slot_size=7 is larger than the pushed batch of 6"):
        ring.push(images[:6], logits[:6])
    assert ring.filled == 0


@pytest.mark.parametrize(
    "images_shape, logits_shape, message",
    [((BATCH, 1, 5, 6), (BATCH, CLASSES), "images of shape"), ((BATCH, *IMAGE_SHAPE), (BATCH, 10), "teacher logits")],
)
def test_push_of_wrong_shapes_is_a_clear_config_error(images_shape, logits_shape, message):
    ring = make_ring(slots=3)
    with pytest.raises(ConfigError, match=message):
        ring.push(torch.randn(images_shape), torch.randn(logits_shape))


def test_bad_construction_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="slot_size"):
        ReplayRing(3, 0, IMAGE_SHAPE, CLASSES, "cpu")
    with pytest.raises(ConfigError, match="image_shape"):
        ReplayRing(3, 4, (5, 6), CLASSES, "cpu")


def test_sampling_an_empty_ring_is_refused():
    with pytest.raises(RuntimeError, match="empty"):
        make_ring(slots=3).sample()


def test_loading_a_state_of_another_geometry_is_a_checkpoint_error():
    ring = make_ring(slots=3)
    ring.push(*random_batch(torch.Generator().manual_seed(18)))
    state = ring.state_dict()
    with pytest.raises(CheckpointError, match="same memory settings"):
        make_ring(slots=4).load_state_dict(state)
    with pytest.raises(CheckpointError, match="inconsistent"):
        make_ring(slots=3).load_state_dict({**state, "filled": 5})
    with pytest.raises(CheckpointError, match="lacks"):
        make_ring(slots=3).load_state_dict({"slots": 3})
