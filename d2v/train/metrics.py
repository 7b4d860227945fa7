"""DVC-friendly training metrics: a per-step TSV (for `dvc plots`) and a JSON summary.

Both live in `metrics/pretrain/<modality>.{tsv,json}` and are written by rank 0 only. On resume the
TSV is cut back to the checkpoint's step, so rows logged after the last checkpoint by a killed run
are not duplicated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from d2v.atomic import atomic_write_json, atomic_write_text

# Columns of the per-step file, in order. Values the model did not report are written as "nan".
STEP_COLUMNS = (
    "step",
    "loss",
    "target_var",
    "pred_var",
    "rel_loss",  # 1 - R^2 at masked positions (d2v.core.health): 1.0 = no better than channel means
    "target_rank",  # effective ranks of the targets and predictions
    "pred_rank",
    "lr",
    "tau",
    "masked_fraction",
    "grad_norm",
    "samples_per_s",
)


def _format(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    return "nan" if math.isnan(value) else f"{value:.6g}"


class StepMetricsFile:
    """Append-only TSV of per-step values; `start(step)` keeps rows up to `step` and drops the rest."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, completed_steps: int) -> None:
        header = "\t".join(STEP_COLUMNS) + "\n"
        kept: list[str] = []
        if completed_steps > 0 and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines()[1:]:
                first = line.split("\t", 1)[0]
                if first.isdigit() and int(first) <= completed_steps:
                    kept.append(line + "\n")
        atomic_write_text(self.path, header + "".join(kept))

    def append(self, row: Mapping[str, Any]) -> None:
        values = [_format(row.get(column, float("nan"))) for column in STEP_COLUMNS]
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("\t".join(values) + "\n")


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """JSON summary with sorted keys; non-finite floats become null (valid JSON for DVC)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    atomic_write_json(path, clean)
