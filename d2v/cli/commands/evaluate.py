"""`d2v evaluate <modality>`: the evaluate@<modality> stage (pretrained vs random init)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from d2v.config import load_params
from d2v.layout import CHECKPOINT_NAME, EVAL_METRICS_DIR, MODALITIES, MODELS_DIR, PARAMS_FILE, Layout
from d2v.eval.seeds import parse_seeds, seed_spread, write_seed_spread

if TYPE_CHECKING:  # torch is imported only when the command runs
    from d2v.eval.record import BaselineRecord

Evaluate = Callable[[Any, Path], "list[BaselineRecord]"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="downstream evaluation of a pretrained checkpoint against a random-init baseline",
        description="Image: linear probe + fine-tuning; text: GLUE-style tasks; speech: CTC ASR. "
        "Every evaluation also runs from random init with the same budget and seed.",
    )
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("--params", default=str(PARAMS_FILE), help="path to params.yaml")
    parser.add_argument("--checkpoint", help=f"default: <models-dir>/<modality>/{CHECKPOINT_NAME}")
    parser.add_argument("--models-dir", default=str(MODELS_DIR))
    parser.add_argument("--out", default=str(EVAL_METRICS_DIR), help="writes <out>/<modality>.json")
    parser.add_argument(
        "--seeds",
        help="comma-separated fine-tuning seeds, e.g. 0,1,2: the whole evaluation once per seed (results in "
        "<out>/seed-<n>/), and the spread of every delta in <out>/<modality>_seeds.json",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    seeds = parse_seeds(args.seeds) if args.seeds else None  # bad --seeds fail before anything loads
    from d2v.eval.device import EvalRuntime
    from d2v.eval.stage import evaluate_modality  # torch import only when the command runs

    runtime = EvalRuntime.from_config(params.evaluate)  # evaluate.device: cuda without one fails here, first

    modality = args.modality
    layout = dataclasses.replace(Layout.from_data(params.data), models_dir=Path(args.models_dir))
    checkpoint = Path(args.checkpoint) if args.checkpoint else layout.checkpoint(modality)
    cfg = getattr(params.evaluate, modality)
    out = Path(args.out)

    def evaluate(eval_cfg: Any, out_dir: Path) -> list[BaselineRecord]:
        return evaluate_modality(
            modality, getattr(params.model, modality), eval_cfg,
            data_root=layout.prepared(modality), checkpoint=checkpoint, out_dir=out_dir,
            side_by_side=params.evaluate.side_by_side, runtime=runtime,
        )

    if seeds is None:
        _print_records(evaluate(cfg, out))
        print(f"wrote {out / (modality + '.json')}")
        return 0
    return _run_seeds(evaluate, cfg, seeds, out, modality)


def _print_records(records: list[BaselineRecord]) -> None:
    width = max(len(r.task) for r in records)
    print(f"{'task':<{width}}  metric      pretrained  random_init   delta  delta 95% interval  pretraining helps")
    for r in records:
        interval = "" if r.delta_ci95_low is None else f"{r.delta_ci95_low:+.4f} … {r.delta_ci95_high:+.4f}"
        print(f"{r.task:<{width}}  {r.metric:<10} {r.pretrained:>10.4f}  {r.random_init:>11.4f}  {r.delta:>+7.4f}"
              f"  {interval:<18}  {r.verdict}")
    _print_input_baselines(records, width)


def _print_input_baselines(records: list[BaselineRecord], width: int) -> None:
    """Pretrained vs the non-learned input baseline, one line per task that has one."""
    with_baseline = [r for r in records if r.input_baseline is not None]
    if not with_baseline:
        return
    print(f"\n{'task':<{width}}  input baseline    score   pretrained-baseline  95% interval        beats it")
    for r in with_baseline:
        low, high = r.input_baseline_delta_ci95_low, r.input_baseline_delta_ci95_high
        interval = "" if low is None or high is None else f"{low:+.4f} … {high:+.4f}"
        print(f"{r.task:<{width}}  {str(r.input_baseline_name):<16} {r.input_baseline:>6.4f}  "
              f"{r.input_baseline_delta:>+19.4f}  {interval:<18}  {'yes' if r.beats_input_baseline else 'no'}")


def _run_seeds(evaluate: Evaluate, cfg: Any, seeds: list[int], out: Path, modality: str) -> int:
    by_seed = {}
    for i, seed in enumerate(seeds, start=1):
        print(f"[evaluate {modality}] seed {seed} ({i}/{len(seeds)})", flush=True)
        by_seed[seed] = evaluate(dataclasses.replace(cfg, seed=seed), out / f"seed-{seed}")
        _print_records(by_seed[seed])
    summary = seed_spread(by_seed)
    width = max(len(task) for task in summary)
    print(f"\n{'task':<{width}}  mean delta  std delta  min delta  max delta  helps on every seed")
    for task, row in summary.items():
        print(f"{task:<{width}}  {row['mean_delta']:>+10.4f}  {row['std_delta']:>9.4f}  {row['min_delta']:>+9.4f}"
              f"  {row['max_delta']:>+9.4f}  {'yes' if row['helps_every_seed'] else 'no'}")
    path = write_seed_spread(out / f"{modality}_seeds.json", summary)
    print(f"wrote {path}")
    return 0
