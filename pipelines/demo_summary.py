"""Printed at the end of `make demo`: the headline numbers and where every output is."""

from __future__ import annotations

import json
from pathlib import Path

from d2v import MODALITIES

REPORT = Path("reports/benchmark.html")


def headline_rows(metrics_dir: Path = Path("metrics/eval")) -> list[str]:
    """One line per modality: its main task, pretrained vs random init."""
    rows = []
    for modality in MODALITIES:
        path = metrics_dir / f"{modality}.json"
        if not path.is_file():
            rows.append(f"  {modality:<7} not run")
            continue
        task, record = next(iter(json.loads(path.read_text(encoding="utf-8")).items()))
        rows.append(
            f"  {modality:<7} {task:<13} {record['metric']:<6} pretrained {record['pretrained']:.4f}"
            f"  random init {record['random_init']:.4f}  delta {record['delta']:+.4f}"
        )
    return rows


def main() -> None:
    print("d2v demo: main downstream task per modality")
    for row in headline_rows():
        print(row)
    outputs = sorted(p for pattern in ("metrics/*/*.json", "reports/validation/*.json") for p in Path(".").glob(pattern))
    print("metrics: " + ", ".join(str(p) for p in outputs))
    if REPORT.is_file():
        print(f"report:  {REPORT.resolve()}  (and {REPORT.with_suffix('.md')})")


if __name__ == "__main__":
    main()
