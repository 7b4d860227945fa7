"""An evaluation's headline metrics through DVCLive: `metrics/eval/<modality>/metrics.json`.

The full records (`metrics/eval/<modality>.json`: every field of every task, the report's input)
stay as they are; this is the flat view DVC users compare runs on (`dvc exp show`, `dvc metrics
diff`): per task the pretrained score, the random-init score, their difference with its 95 %
interval, and the input baseline. Names are `<task>/<field>`, which DVCLive nests as
{task: {field: value}}.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from d2v.eval.record import BaselineRecord

HEADLINE_FIELDS = (
    "pretrained",
    "random_init",
    "delta",
    "delta_ci95_low",
    "delta_ci95_high",
    "input_baseline",
    "input_baseline_delta",
)


def headline_metrics(records: Sequence[BaselineRecord]) -> dict[str, float]:
    """`<task>/<field>` -> value for every finite headline field of every record."""
    flat: dict[str, float] = {}
    for record in records:
        for field in HEADLINE_FIELDS:
            value = getattr(record, field)
            if value is not None and math.isfinite(value):
                flat[f"{record.task}/{field}"] = float(value)
    return flat


def log_eval_metrics(live_dir: Path, records: Sequence[BaselineRecord]) -> Path:
    """Write the headline metrics with DVCLive (a fresh directory each run); returns metrics.json."""
    os.environ.setdefault("DVCLIVE_LOGLEVEL", "WARNING")
    from dvclive import Live

    # No plots: one value per task and run. DVCLive must not record an experiment or edit dvc.yaml:
    # the pipeline's stage owns both.
    with Live(dir=str(live_dir), report=None, save_dvc_exp=False, dvcyaml=None) as live:
        for name, value in headline_metrics(records).items():
            live.log_metric(name, value, plot=False)
    return Path(live_dir) / "metrics.json"
