"""CTC fine-tuning speed: the frozen CNN run once per utterance (cached) vs every update, and
length-bucketed batches vs random ones.

The tiny speech student (data2vec 2.0 preset) is fine-tuned with `d2v.eval.ctc.ctc_finetune` on
synthetic utterances of about the embedded ASR set's lengths (1.2-6 s at 16 kHz; timing depends on
length, not content): cached CNN features with length buckets (the default), caching switched off,
and random batches instead of buckets. The cached and uncached runs must give the same losses.
Prints a table and writes benchmarks/results/ctc_cache.json.

    python benchmarks/bench_ctc_cache.py [--steps 150] [--utterances 128]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

import d2v.eval.ctc as ctc
from d2v.config import ModelChoice
from d2v.atomic import atomic_write_json
from d2v.data.datasets import SpeechCollate
from d2v.eval.config import SpeechEvalConfig
from d2v.models import build_model, model_spec

RESULTS = Path(__file__).resolve().parent / "results" / "ctc_cache.json"


def utterances(n: int) -> list[tuple[np.ndarray, str, str]]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(int(rng.uniform(1.2, 6.0) * 16_000)).astype(np.float32) * 0.1, "a cab", "spk") for _ in range(n)]


def ctc_config(steps: int) -> SpeechEvalConfig:
    """The demo's CTC recipe (frozen feature encoder, tri-stage lr) for `steps` updates of batch 8."""
    return SpeechEvalConfig(
        steps=steps, lr=2e-3, batch_size=8, weight_decay=0.0, freeze_feature_encoder=True, freeze_encoder_steps=0,
        tri_stage=(0.1, 0.4, 0.5), init_lr_scale=0.01, final_lr_scale=0.05, n_train=None, n_test=None, seed=0,
    )


def random_batches(dataset, lengths, batch_size, *, seed, collate=None):  # type: ignore[no-untyped-def]
    return ctc.make_loader(dataset, batch_size, shuffle=True, seed=seed, collate=collate)


def run(items: list, steps: int, cached: bool, bucketed: bool = True) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    encoder = build_model(model_spec("speech", ModelChoice(2, "tiny"))).student_encoder()
    cfg = ctc_config(steps)
    original_cache, original_loader = ctc._frozen_feature_splits, ctc.make_bucketed_loader
    if not cached:
        ctc._frozen_feature_splits = lambda *args: None  # type: ignore[assignment]
    if not bucketed:
        ctc.make_bucketed_loader = random_batches  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        result = ctc.ctc_finetune(encoder, {"train": items, "test": items[:16]}, cfg, collate=SpeechCollate())
        return time.perf_counter() - start, result.train_losses
    finally:
        ctc._frozen_feature_splits = original_cache  # type: ignore[assignment]
        ctc.make_bucketed_loader = original_loader  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--utterances", type=int, default=128)
    args = parser.parse_args()
    items = utterances(args.utterances)
    rows = []
    losses = {}
    for cached, bucketed in ((False, True), (True, False), (True, True)):
        seconds, losses[cached, bucketed] = run(items, args.steps, cached, bucketed)
        rows.append({"cnn": "cached" if cached else "every update", "batches": "length buckets" if bucketed else "random",
                     "steps": args.steps, "utterances": args.utterances, "seconds": round(seconds, 2),
                     "s_per_update": round(seconds / args.steps, 4)})
    if not np.allclose(losses[True, True], losses[False, True], rtol=1e-4):
        raise SystemExit("cached and uncached CTC runs diverged: the cache is not equivalent")
    cache_speedup = rows[0]["seconds"] / rows[2]["seconds"]
    bucket_speedup = rows[1]["seconds"] / rows[2]["seconds"]
    print(f"CTC fine-tuning, tiny speech student, batch 8, {torch.get_num_threads()} threads (time includes caching and decoding)")
    print("cnn | batches | steps | utterances | seconds | s/update")
    for row in rows:
        print(f"{row['cnn']} | {row['batches']} | {row['steps']} | {row['utterances']} | {row['seconds']} | {row['s_per_update']}")
    print(f"cache speed-up: {cache_speedup:.2f}x (losses identical to rtol 1e-4); length buckets: {bucket_speedup:.2f}x")
    payload = {"threads": torch.get_num_threads(), "cores": os.cpu_count(), "torch": torch.__version__,
               "cache_speedup": round(cache_speedup, 2), "bucket_speedup": round(bucket_speedup, 2), "rows": rows}
    atomic_write_json(RESULTS, payload)  # atomic: a temporary name, then rename
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
