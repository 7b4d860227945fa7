"""`d2v evaluate <modality>`: the evaluate@<modality> stage (pretrained vs random init)."""

from __future__ import annotations

import argparse
from pathlib import Path

from d2v import MODALITIES
from d2v.config import load_params


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="downstream evaluation of a pretrained checkpoint against a random-init baseline",
        description="Image: linear probe + fine-tuning; text: GLUE-style tasks; speech: CTC ASR. "
        "Every evaluation also runs from random init with the same budget and seed.",
    )
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("--params", default="params.yaml", help="path to params.yaml")
    parser.add_argument("--checkpoint", help="default: <models-dir>/<modality>/checkpoint.pt")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--out", default="metrics/eval", help="writes <out>/<modality>.json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from d2v.eval.stage import evaluate_modality  # torch import only when the command runs

    modality = args.modality
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.models_dir) / modality / "checkpoint.pt"
    records = evaluate_modality(
        modality,
        getattr(params.model, modality),
        getattr(params.evaluate, modality),
        data_root=Path(params.data.prepared_dir) / modality,
        checkpoint=checkpoint,
        out_dir=Path(args.out),
    )
    width = max(len(r.task) for r in records)
    print(f"{'task':<{width}}  metric      pretrained  random_init   delta  delta 95% interval  pretraining helps")
    for r in records:
        interval = "" if r.delta_ci95_low is None else f"{r.delta_ci95_low:+.4f} … {r.delta_ci95_high:+.4f}"
        print(f"{r.task:<{width}}  {r.metric:<10} {r.pretrained:>10.4f}  {r.random_init:>11.4f}  {r.delta:>+7.4f}"
              f"  {interval:<18}  {r.verdict}")
    print(f"wrote {Path(args.out) / (modality + '.json')}")
    return 0
