"""Distributed teacher pretraining: disjoint shards per rank, and a 2-rank torchrun job (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from fastlrwa.data import ArraySplit, DeviceImageSet, dataset_info
from fastlrwa.trainer.pretrain import DeviceTrainBatches


def _split(n: int) -> ArraySplit:
    info = dataset_info("digits")
    images = torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8)
    # Label i on sample i lets the test see which samples each rank drew.
    return ArraySplit(images=images, labels=torch.arange(n), info=info)


def test_ranks_draw_disjoint_equal_shards_of_one_permutation():
    n, world, batch = 23, 3, 4
    train_set = DeviceImageSet(_split(n), "cpu")
    seen = []
    for rank in range(world):
        batches = DeviceTrainBatches(
            train_set,
            batch_size=batch,
            info=train_set.info,
            rng=torch.Generator().manual_seed(100 + rank),
            order_rng=torch.Generator().manual_seed(7),
            rank=rank,
            world_size=world,
        )
        labels = torch.cat([y for _, y in batches.epoch()])
        assert batches.steps_per_epoch == 2 and len(labels) == n // world
        seen.append(labels)
    union = torch.cat(seen)
    assert len(set(union.tolist())) == len(union) == world * (n // world)
    expected = torch.randperm(n, generator=torch.Generator().manual_seed(7))
    for rank in range(world):
        assert torch.equal(seen[rank], expected[rank::world][: n // world])


def test_one_process_matches_the_plain_loader():
    train_set = DeviceImageSet(_split(17), "cpu")
    one = DeviceTrainBatches(train_set, batch_size=5, info=train_set.info, rng=torch.Generator().manual_seed(3))
    labels = torch.cat([y for _, y in one.epoch()])
    assert torch.equal(labels, torch.randperm(17, generator=torch.Generator().manual_seed(3)))


def test_torchrun_two_ranks_pretrain(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "teacher"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "fastlrwa",
            "pretrain",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["history"]) == 2
    assert 0.0 <= metrics["test_accuracy"] <= 100.0
    assert result.stderr.count("teacher lenet5 on digits") == 1  # rank 0 alone logs and writes
