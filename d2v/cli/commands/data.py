"""`d2v data download|prepare|tokenize|validate <modality>`: the data stages (dvc.yaml calls these)."""

from __future__ import annotations

import argparse
import json
import time

from d2v.config import load_params
from d2v.layout import MODALITIES, PARAMS_FILE
from d2v.errors import D2VError

ACTIONS = ("download", "prepare", "tokenize", "validate")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="download, prepare, tokenize or validate a modality's data")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("modality", choices=MODALITIES)
    parser.add_argument("--params", default=str(PARAMS_FILE), help="path to params.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from d2v.data import stages

    params = load_params(args.params)
    start = time.perf_counter()
    if args.action == "download":
        result = stages.run_download(params.data, args.modality)
    elif args.action == "prepare":
        result = stages.run_prepare(params.data, args.modality, params.seed)
    elif args.action == "tokenize":
        if args.modality != "text":
            raise D2VError("data tokenize: only the text modality has a tokenizer")
        result = stages.run_tokenize(params.data, params.seed)
    else:
        report = stages.run_validate(params.data, args.modality)
        result = {k: report[k] for k in ("success", "n_expectations", "n_failed")}
        _print_dataset(report.get("dataset", {}))
    summary = json.dumps(result, default=str)
    print(f"d2v data {args.action} {args.modality}: {summary[:400]} ({time.perf_counter() - start:.1f} s)")
    return 0


def _print_dataset(dataset: dict) -> None:
    """Data from files (ImageNet, your own folder): each split's size and every skipped item, by name."""
    for split, count in dataset.get("splits", {}).items():
        skipped = dataset.get("skipped", {}).get(split, [])
        print(f"  {split}: {count} items, {len(skipped)} skipped")
        for item in skipped:
            print(f"    skipped {item['item']}: {item['reason']}")
