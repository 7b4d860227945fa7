"""benchmarks/bench_hf_peer.py: interleaved timing, exact masks, the speed-up, and (when transformers
is installed; it is not a d2v dependency) the peer's step itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_hf_peer  # noqa: E402  (benchmarks/ is not a package)


def test_rounds_alternate_between_the_steps_after_the_warmup() -> None:
    calls: list[str] = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = bench_hf_peer.interleaved_seconds(steps, rounds=2, per_round=3, warmup=1)
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2}


def test_masks_hide_exactly_the_ratio_in_every_row() -> None:
    masks = bench_hf_peer.random_masks(5, 49, 0.6, torch.Generator().manual_seed(1))
    assert masks.sum(dim=1).tolist() == [29] * 5
    assert not torch.equal(masks[0], masks[1])  # positions are drawn per row


def test_speedup_is_the_peers_median_time_over_d2vs() -> None:
    times = {"d2v": [0.1, 0.3, 0.2], "transformers peer": [0.5, 0.4, 0.6]}
    summary = bench_hf_peer.summarise(times, {"d2v": 20.0, "transformers peer": 20.0}, peak=100.0)
    assert summary["d2v_speedup_over_peer"] == 2.5
    d2v = summary["rows"][0]
    assert (d2v["s_per_step_median"], d2v["pct_of_matmul_peak"]) == (0.2, 100.0)  # 20 GFLOP in 0.2 s of 100 GFLOP/s


def test_the_peer_step_trains_its_student_and_moves_its_teacher() -> None:
    pytest.importorskip("transformers")
    step, owner = bench_hf_peer.peer_step(torch.randn(4, 1, 28, 28))
    torch.manual_seed(0)
    fresh = bench_hf_peer.PeerData2Vec()  # built as the step's model was: its weights before the step
    step()
    moved_student = any(not torch.equal(a, b) for a, b in zip(owner.student.parameters(), fresh.student.parameters()))
    moved_teacher = any(not torch.equal(a, b) for a, b in zip(owner.teacher.parameters(), fresh.teacher.parameters()))
    assert moved_student and moved_teacher
