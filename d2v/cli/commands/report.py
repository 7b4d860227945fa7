"""`d2v report`: the report stage; writes reports/benchmark.{md,html} from the pipeline's outputs."""

from __future__ import annotations

import argparse

from d2v.config import load_params
from d2v.layout import METRICS_DIR, PARAMS_FILE, REPORTS_DIR, REPORT_FIGURES_NAME


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="build the benchmark report (Markdown + self-contained HTML)",
        description="Read metrics/pretrain, metrics/eval, the validation reports, params.yaml and dvc.lock; "
        "write <out>/benchmark.md, <out>/benchmark.html and <out>/benchmark_figures/. A modality "
        "whose files are missing is reported as 'not run'.",
    )
    parser.add_argument("--params", default=str(PARAMS_FILE), help="path to params.yaml")
    parser.add_argument("--out", default=str(REPORTS_DIR), help="output folder")
    parser.add_argument("--metrics-dir", default=str(METRICS_DIR), help="folder holding pretrain/ and eval/")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    from d2v.report import build_report  # matplotlib import only when the command runs

    files = build_report(params, args.params, out_dir=args.out, metrics_dir=args.metrics_dir)
    print(f"d2v report: {files.html}")
    print(f"d2v report: {files.markdown} (figures in {files.markdown.parent / REPORT_FIGURES_NAME})")
    return 0
