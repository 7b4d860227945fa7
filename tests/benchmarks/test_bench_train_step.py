"""benchmarks/bench_train_step.py: the demo's model settings, the v2 variants and the speed-up table."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_train_step  # noqa: E402  (benchmarks/ is not a package)


def test_rows_run_the_demo_front_end_and_the_requested_mask() -> None:
    v2 = bench_train_step.demo_overrides("speech", 2)
    assert v2["speech"] == {"feature_extractor": "log_mel"} and "target" in v2  # params.yaml's demo model
    assert bench_train_step.demo_overrides("speech", 1) == {"speech": {"feature_extractor": "log_mel"}}
    batch = {"waveform": torch.randn(2, 16_000)}
    row = bench_train_step.bench("speech", 2, steps=1, warmup=0, clones=1, mask_ratio=0.8, overrides=v2, batch=batch)
    assert (row["version"], row["clones"], row["mask_ratio"], row["batch"]) == (2, 1, 0.8, 2)
    assert float(row["gflop_per_step"]) > 0 and float(row["samples_per_s"]) > 0


def test_speedups_divide_each_v2_row_by_v1() -> None:
    rows = [
        {"modality": "text", "version": 1, "clones": 1, "mask_ratio": 0.15, "samples_per_s": 50.0},
        {"modality": "text", "version": 2, "clones": 8, "mask_ratio": 0.42, "samples_per_s": 25.0},
        {"modality": "text", "version": 2, "clones": 1, "mask_ratio": 0.8, "samples_per_s": 110.0},
    ]
    assert bench_train_step.v2_speedups(rows) == {"text": {"M=8 mask 0.42": 0.5, "M=1 mask 0.8": 2.2}}


def test_decoder_share_counts_the_v2_decoder_only() -> None:
    batch = {"tokens": torch.randint(5, 100, (2, 16))}
    small = {"text": {"vocab_size": 100, "max_positions": 16}}
    v2 = bench_train_step.bench("text", 2, steps=1, warmup=0, clones=1, overrides=small, batch=batch)
    v1 = bench_train_step.bench("text", 1, steps=1, warmup=0, overrides=small, batch=batch)
    assert 0.0 < float(v2["decoder_flop_share"]) < 1.0
    assert v1["decoder_flop_share"] == 0.0


def test_variants_that_resolve_to_the_same_row_run_once() -> None:
    # The image preset masks 80 % already: "M = 1" and "M = 1, mask 0.8" are one row there.
    assert bench_train_step.distinct_variants("image") == [(1, None, None), (2, None, None), (2, 1, None)]
    assert bench_train_step.distinct_variants("text") == list(bench_train_step.VARIANTS)


def test_a_compiled_row_counts_the_same_flops_as_an_eager_one() -> None:
    batch = {"tokens": torch.randint(5, 100, (2, 16))}
    small = {"text": {"vocab_size": 100, "max_positions": 16}}
    eager = bench_train_step.bench("text", 2, steps=1, warmup=0, clones=1, overrides=small, batch=batch)
    compiled = bench_train_step.bench("text", 2, steps=1, warmup=0, clones=1, overrides=small, batch=batch, compiled=True)
    assert compiled["compiled"] is True and eager["compiled"] is False
    assert compiled["gflop_per_step"] == eager["gflop_per_step"] and float(compiled["s_per_step"]) > 0
