"""Pretrained vs random init in turn or side by side: wall time of one comparison, same results.

`d2v.eval.baseline.compare_with_random_init` runs the two evaluations one after the other on all
threads, or (`side_by_side=True`, where the process has at most two threads) at the same time in
two single-threaded processes. This times both modes on the tiny text encoder (GLUE-style
fine-tuning, `d2v.eval.finetune`) and the tiny speech student (CTC, `d2v.eval.ctc`) with synthetic
inputs of the embedded tasks' sizes (timing depends on shapes, not content), and checks that the
metrics agree. The "pretrained" encoder is a second random init: only the time is measured.
Prints a table and writes benchmarks/results/side_by_side.json.

    python benchmarks/bench_side_by_side.py [--text-examples 1000] [--ctc-steps 150]
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from d2v.config import ModelChoice
from d2v.data.datasets import SpeechCollate, TextCollate
from d2v.atomic import atomic_write_json
from d2v.eval.baseline import compare_with_random_init
from d2v.eval.config import FinetuneConfig
from d2v.eval.ctc import ctc_finetune
from d2v.eval.data import EvalResult
from d2v.eval.finetune import finetune
from d2v.eval.side_by_side import worth_running_side_by_side
from d2v.models import build_model, model_spec

# The CTC fixtures and recipe of the CTC-speed benchmark beside this script (its folder is on sys.path).
from bench_ctc_cache import ctc_config, utterances

RESULTS = Path(__file__).resolve().parent / "results" / "side_by_side.json"


def text_examples(n: int) -> list[tuple[list[int], None, int]]:
    """Single sentences of 8-40 sentencepiece ids (the embedded tasks' range), three classes."""
    rng = np.random.default_rng(0)
    return [(rng.integers(5, 8000, int(rng.integers(8, 40))).tolist(), None, int(rng.integers(0, 3))) for _ in range(n)]


def encoder_factory(modality: str, overrides: dict) -> Callable[[], torch.nn.Module]:
    return lambda: build_model(model_spec(modality, ModelChoice(2, "tiny", overrides))).student_encoder()


def time_comparison(
    evaluate: Callable[[torch.nn.Module], EvalResult], factory: Callable[[], torch.nn.Module], metric: str, side_by_side: bool
) -> tuple[float, float, float]:
    torch.manual_seed(1)
    pretrained = factory()
    start = time.perf_counter()
    record = compare_with_random_init("bench", metric, evaluate, pretrained, factory, seed=0, side_by_side=side_by_side)[0]
    return time.perf_counter() - start, record.pretrained, record.random_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-examples", type=int, default=1000)
    parser.add_argument("--ctc-steps", type=int, default=150)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    if not worth_running_side_by_side(2):
        raise SystemExit(f"this process has {threads} threads: the comparison runs in turn here; "
                         "run with OMP_NUM_THREADS=2 to measure side by side")
    examples = text_examples(args.text_examples)
    text_cfg = FinetuneConfig(epochs=1, lr=5e-4, batch_size=32, weight_decay=0.01, layer_decay=1.0,
                              label_smoothing=0.0, warmup_fraction=0.06, n_train=None)
    text = partial(finetune, splits={"train": examples, "test": examples[:256]}, cfg=text_cfg, pooling="mean",
                   n_test=None, seed=0, collate=TextCollate(64))
    items = utterances(128)
    speech = partial(ctc_finetune, splits={"train": items, "test": items[:16]}, cfg=ctc_config(args.ctc_steps),
                     collate=SpeechCollate())
    cases = [
        (f"text fine-tuning, {args.text_examples} examples x 1 epoch", text, encoder_factory("text", {}), "top1"),
        (f"CTC, {args.ctc_steps} updates (log-mel front end)", speech,
         encoder_factory("speech", {"speech": {"feature_extractor": "log_mel"}, "target": {"source": "block"}}), "cer"),
    ]
    rows = []
    for name, evaluate, factory, metric in cases:
        in_turn = time_comparison(evaluate, factory, metric, side_by_side=False)
        together = time_comparison(evaluate, factory, metric, side_by_side=True)
        rows.append({
            "comparison": name, "in_turn_s": round(in_turn[0], 2), "side_by_side_s": round(together[0], 2),
            "speedup": round(in_turn[0] / together[0], 2), "metric": metric,
            "same_metrics": in_turn[1:] == together[1:],
            "max_metric_difference": max(abs(a - b) for a, b in zip(in_turn[1:], together[1:])),
        })
    print(f"pretrained vs random init, both runs of one comparison; {threads} threads in turn, 1 per process side by side")
    print("comparison | in turn (s) | side by side (s) | speed-up | same metrics")
    for row in rows:
        same = "yes" if row["same_metrics"] else f"no (max difference {row['max_metric_difference']:.4g})"
        print(f"{row['comparison']} | {row['in_turn_s']} | {row['side_by_side_s']} | {row['speedup']}x | {same}")
    atomic_write_json(RESULTS, {"threads": threads, "cores": os.cpu_count(), "torch": torch.__version__, "rows": rows})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
