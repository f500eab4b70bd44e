"""The per-step replay paths must not synchronise the host with the device."""

from __future__ import annotations

import inspect

import pytest

from fastlrwa.replay import GenerativeReplay, MemoryBankReplay, ReplayRing
from fastlrwa.replay.prefetch import HostPrefetcher

SYNCING_CALLS = (".item(", ".tolist(", "bool(", "torch.equal", ".cpu(", ".numpy(", ".synchronize(")

PER_STEP_METHODS = [
    ReplayRing.push,
    ReplayRing.sample,
    MemoryBankReplay.sample,
    MemoryBankReplay.observe_generator_batch,
    MemoryBankReplay.observe_student_batch,
    MemoryBankReplay.end_epoch,
    GenerativeReplay.sample,
    GenerativeReplay.observe_generator_batch,
    GenerativeReplay.observe_student_batch,
    HostPrefetcher.take,
    HostPrefetcher.write_slot,
]


@pytest.mark.parametrize("method", PER_STEP_METHODS, ids=lambda method: method.__qualname__)
def test_per_step_method_has_no_syncing_call(method):
    source = inspect.getsource(method)
    found = [call for call in SYNCING_CALLS if call in source]
    assert not found, f"{method.__qualname__} calls {found}"
