"""Pretraining metrics through DVCLive: one plot file per metric and a JSON summary, DVC's own format.

A run writes `metrics/pretrain/<modality>/` (DVCLive's directory layout):

    metrics.json              the run summary (final loss, ranks, wall time ...) plus each metric's
                              last value and DVCLive's `step`: what `dvc exp show` tabulates
    plots/metrics/<name>.tsv  `step<TAB><name>` rows per logged metric: what `dvc plots` draws

Only rank 0 writes. DVCLive appends on resume but cannot forget rows, so a resumed run first cuts
every plot file back to the checkpoint's step: rows logged after the last checkpoint by a killed run
are not duplicated. Non-finite values are not logged (the health metrics are measured every few
steps; their plot files hold only the steps that measured them).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from d2v.atomic import atomic_write_json, atomic_write_text
from d2v.layout import LIVE_PLOTS_SUBDIR, LIVE_SUMMARY_NAME

if TYPE_CHECKING:
    from dvclive import Live

# What a training step reports, in order (the report's pretraining table reads these names).
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


def plots_dir(live_dir: Path) -> Path:
    return live_dir / LIVE_PLOTS_SUBDIR


def summary_path(live_dir: Path) -> Path:
    return live_dir / LIVE_SUMMARY_NAME


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null: DVC and the report read the summary as strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}


def truncate_plots(live_dir: Path, completed_steps: int) -> None:
    """Keep each plot file's rows up to `completed_steps` (the checkpoint being resumed)."""
    directory = plots_dir(live_dir)
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.tsv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            continue
        kept = [line for line in lines[1:] if line.split("\t", 1)[0].isdigit()
                and int(line.split("\t", 1)[0]) <= completed_steps]  # fmt: skip
        atomic_write_text(path, "\n".join([lines[0], *kept]) + "\n")


class PretrainLog:
    """Per-step metrics and the final summary of one pretraining run, written by DVCLive."""

    def __init__(self, live_dir: Path) -> None:
        self.live_dir = Path(live_dir)
        self._live: Live | None = None

    def start(self, completed_steps: int) -> None:
        """Open the log: from scratch at step 0 (DVCLive clears its directory), else resume."""
        # DVCLive must not record an experiment or edit dvc.yaml: the pipeline's stage owns both.
        os.environ.setdefault("DVCLIVE_LOGLEVEL", "WARNING")
        from dvclive import Live  # ~1 s import: only when a run starts

        # Resume keeps the plot files (DVCLive would clear them otherwise); the summary is only
        # written at the end, so a killed run has plot files but no metrics.json yet.
        resume = completed_steps > 0
        if resume:
            truncate_plots(self.live_dir, completed_steps)
        self._live = Live(dir=str(self.live_dir), resume=resume, report=None, save_dvc_exp=False, dvcyaml=None)

    def append(self, row: Mapping[str, Any]) -> None:
        live = self._require()
        live.step = int(row["step"])
        for name in STEP_COLUMNS[1:]:
            value = row.get(name)
            if _finite(value):
                live.log_metric(name, float(value))

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Write the summary (DVCLive adds each metric's last value and `step`) and close."""
        live = self._require()
        live.summary.update(_clean(summary))
        live.end()
        self._live = None

    def _require(self) -> Live:
        if self._live is None:
            raise RuntimeError("PretrainLog.start() must be called first")
        return self._live


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """A summary written without DVCLive (tests, tools): the same strict-JSON cleaning."""
    atomic_write_json(path, _clean(summary))
