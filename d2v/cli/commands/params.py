"""`d2v params check|show`: validate params.yaml and print the resolved values."""

from __future__ import annotations

import argparse
import json

from d2v.config import load_params, to_mapping
from d2v.layout import PARAMS_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("params", help="validate or print params.yaml")
    parser.add_argument("action", choices=["check", "show"], help="check: validate; show: print JSON")
    parser.add_argument("--params", default=str(PARAMS_FILE), help="path to params.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    if args.action == "show":
        print(json.dumps(to_mapping(params), indent=2))
    else:
        print(f"{args.params}: ok")
    return 0
