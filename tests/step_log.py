"""The per-step pretraining log as rows of text, for tests that compare runs step by step.

The trainer logs through DVCLive (one `step<TAB><metric>` file per metric); the report's reader
joins them on step. Here the joined table becomes rows in STEP_COLUMNS order, header first, with
"nan" where a step did not log a metric.
"""

from __future__ import annotations

import math
from pathlib import Path

from d2v.report.inputs import read_live_plots
from d2v.train.metrics import STEP_COLUMNS


def step_rows(live_dir: Path) -> list[list[str]]:
    table = read_live_plots(Path(live_dir) / "plots" / "metrics")
    rows = [list(STEP_COLUMNS)]
    for i, step in enumerate(table.get("step", ())):
        row = [str(int(step))]
        for name in STEP_COLUMNS[1:]:
            value = table[name][i] if name in table else math.nan
            row.append("nan" if math.isnan(value) else repr(value))
        rows.append(row)
    return rows
