"""DDP on CPU: two gloo processes under torchrun train the stand-in model and agree exactly."""

import os
import subprocess
import sys

import pytest
import torch

from d2v.train.distributed import DistEnv, ResumableSampler


@pytest.mark.slow
def test_torchrun_two_ranks_end_with_identical_weights(tmp_path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "d2v.train._selftest", str(tmp_path), "--steps", "6", "--checkpoint-every", "3",
    ]
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rank0 = torch.load(tmp_path / "weights-rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "weights-rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert int(rank0["num_updates"]) == 6  # EMA stepped on every rank, once per update
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert checkpoint["step"] == 6 and len(checkpoint["rng"]) == 2  # one RNG state per rank
    # Only rank 0 logs: one progress header, one metrics file with one row per update.
    assert proc.stderr.count("device=cpu world=2") == 1
    assert len((tmp_path / "metrics" / "image" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()) == 1 + 6


def test_sampler_splits_ranks_and_skips_consumed_batches() -> None:
    data = list(range(20))

    def sampler(rank: int) -> ResumableSampler:
        return ResumableSampler(data, DistEnv(rank, 2, rank, torch.device("cpu")), seed=3, batch_size=2)

    s0, s1 = sampler(0), sampler(1)
    s0.set_position(epoch=1, skip_batches=0)
    s1.set_position(epoch=1, skip_batches=0)
    full0, full1 = list(s0), list(s1)
    assert sorted(full0 + full1) == data and s0.batches_per_epoch() == 5
    s0.set_position(epoch=1, skip_batches=2)
    assert list(s0) == full0[4:] and len(s0) == 6
    s0.set_position(epoch=2, skip_batches=0)
    assert list(s0) != full0  # a new epoch reshuffles
