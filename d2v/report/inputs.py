"""Read the pipeline's outputs that the benchmark report shows; a modality that has none is "not run".

Formats (written by their producers, read here without importing them, so no torch import):

    metrics/pretrain/<modality>/       DVCLive directory of d2v/train: metrics.json (summary: steps,
                                       first/final loss, final_rel_loss, ...), plots/metrics/<name>.tsv
                                       (`step<TAB><name>` per metric: loss, rel_loss, lr, tau, ...)
    metrics/eval/<modality>.json       {task: record} from d2v/eval (task, metric, pretrained, ...)
    metrics/eval/image_confusion.csv   actual,predicted; one row per test image
    reports/validation/<modality>.json the data validation result of d2v/data
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from d2v.eval.record import BaselineRecord
from d2v.layout import data_docs_dir
from d2v.layout import EVAL_METRICS_DIR, LIVE_PLOTS_SUBDIR, LIVE_SUMMARY_NAME, MODALITIES, PRETRAIN_METRICS_DIR, confusion_name
from d2v.errors import D2VError

# Keys every evaluation record must carry (d2v.eval.record.BaselineRecord).
RECORD_KEYS = ("task", "metric", "higher_is_better", "pretrained", "random_init", "delta", "n_train", "n_test",
               "wall_time_s")


@dataclass(frozen=True)
class PretrainRun:
    summary: dict[str, Any]
    steps: dict[str, tuple[float, ...]]  # column -> values, one per logged step ({} if no step log)


INPUT_BASELINE_NUMBERS = ("input_baseline", "input_baseline_delta", "input_baseline_delta_ci95_low",
                          "input_baseline_delta_ci95_high", "input_baseline_output_ratio")

# The report reads back exactly what d2v.eval writes.
EvalRecord = BaselineRecord


@dataclass(frozen=True)
class Confusion:
    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]  # counts[actual][predicted]


@dataclass(frozen=True)
class Validation:
    success: bool
    n_expectations: int
    n_failed: int
    rows: Any  # as the validation report gives it (a count or a per-frame mapping)
    data_docs: bool = False  # the GX Data Docs site (<validation dir>/data_docs/<modality>/index.html) exists


@dataclass(frozen=True)
class ModalityInputs:
    modality: str
    pretrain: PretrainRun | None
    evaluation: tuple[EvalRecord, ...]  # the first record is the modality's main task; () = not run
    validation: Validation | None
    confusion: Confusion | None


def collect_modality(modality: str, metrics_dir: Path, validation_dir: Path) -> ModalityInputs:
    return ModalityInputs(
        modality=modality,
        pretrain=read_pretrain(metrics_dir / PRETRAIN_METRICS_DIR.name, modality),
        evaluation=read_eval(metrics_dir / EVAL_METRICS_DIR.name / f"{modality}.json"),
        validation=_with_data_docs(read_validation(validation_dir / f"{modality}.json"), validation_dir, modality),
        confusion=read_confusion(metrics_dir / EVAL_METRICS_DIR.name / confusion_name(modality)),
    )


def _with_data_docs(validation: Validation | None, validation_dir: Path, modality: str) -> Validation | None:
    if validation is None:
        return None
    return dataclasses.replace(validation, data_docs=(data_docs_dir(validation_dir, modality) / "index.html").is_file())


def collect_all(metrics_dir: Path, validation_dir: Path) -> tuple[ModalityInputs, ...]:
    return tuple(collect_modality(m, metrics_dir, validation_dir) for m in MODALITIES)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise D2VError(f"{path}: not valid JSON ({exc}); re-run the stage that writes it") from None


def read_pretrain(directory: Path, modality: str) -> PretrainRun | None:
    live = directory / modality
    summary_path = live / LIVE_SUMMARY_NAME
    if not summary_path.is_file():
        return None
    summary = _read_json(summary_path)
    if not isinstance(summary, dict):
        raise D2VError(f"{summary_path}: expected a JSON object (the pretraining summary), got {type(summary).__name__}")
    return PretrainRun(summary=summary, steps=read_live_plots(live / LIVE_PLOTS_SUBDIR))


def read_live_plots(directory: Path) -> dict[str, tuple[float, ...]]:
    """DVCLive's per-metric files joined on `step`: one column per metric, NaN where a step lacks it."""
    if not directory.is_dir():
        return {}
    per_metric: dict[str, dict[float, float]] = {}
    for path in sorted(directory.glob("*.tsv")):
        columns = read_step_tsv(path)
        if "step" not in columns:
            raise D2VError(f"{path}: no 'step' column (a DVCLive plot file has step<TAB>{path.stem})")
        for name, values in columns.items():
            if name != "step":
                per_metric[name] = dict(zip(columns["step"], values))
    steps = sorted({step for values in per_metric.values() for step in values})
    table = {"step": tuple(steps)}
    table.update({name: tuple(values.get(step, math.nan) for step in steps) for name, values in per_metric.items()})
    return table


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise D2VError(f"{where}: {text!r} is not a number") from None


def read_step_tsv(path: Path) -> dict[str, tuple[float, ...]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return {}
    header = lines[0].split("\t")
    columns: dict[str, list[float]] = {name: [] for name in header}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(header):
            raise D2VError(f"{path}:{line_no}: {len(values)} fields, expected {len(header)} ({', '.join(header)})")
        for name, value in zip(header, values):
            columns[name].append(_number(value, f"{path}:{line_no} column {name}"))
    return {name: tuple(values) for name, values in columns.items()}


def _record(raw: Any, where: str) -> EvalRecord:
    if not isinstance(raw, Mapping):
        raise D2VError(f"{where}: expected an object with {', '.join(RECORD_KEYS)}")
    missing = [key for key in RECORD_KEYS if key not in raw]
    if missing:
        raise D2VError(f"{where}: missing {', '.join(missing)}")
    try:
        return EvalRecord(
            task=str(raw["task"]), metric=str(raw["metric"]), higher_is_better=bool(raw["higher_is_better"]),
            pretrained=float(raw["pretrained"]), random_init=float(raw["random_init"]), delta=float(raw["delta"]),
            n_train=int(raw["n_train"]), n_test=int(raw["n_test"]), wall_time_s=float(raw["wall_time_s"]),
            delta_ci95_low=_optional_float(raw.get("delta_ci95_low")),
            delta_ci95_high=_optional_float(raw.get("delta_ci95_high")),
            pretrained_output_ratio=_optional_float(raw.get("pretrained_output_ratio")),
            random_init_output_ratio=_optional_float(raw.get("random_init_output_ratio")),
            pretrained_final_train_loss=_optional_float(raw.get("pretrained_final_train_loss")),
            random_init_final_train_loss=_optional_float(raw.get("random_init_final_train_loss")),
            input_baseline_final_train_loss=_optional_float(raw.get("input_baseline_final_train_loss")),
            **_input_baseline_fields(raw),
        )
    except (TypeError, ValueError) as exc:
        raise D2VError(f"{where}: {exc}") from None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _input_baseline_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The optional input-baseline keys (absent from files written before input baselines existed);
    `beats_input_baseline` in the file is derived from them and is recomputed by the record."""
    name = raw.get("input_baseline_name")
    return {
        "input_baseline_name": None if name is None else str(name),
        **{key: _optional_float(raw.get(key)) for key in INPUT_BASELINE_NUMBERS},
    }


def read_eval(path: Path) -> tuple[EvalRecord, ...]:
    if not path.is_file():
        return ()
    tree = _read_json(path)
    if not isinstance(tree, dict):
        raise D2VError(f"{path}: expected {{task: record}}, got {type(tree).__name__}")
    return tuple(_record(raw, f"{path} task {name!r}") for name, raw in tree.items())


def read_validation(path: Path) -> Validation | None:
    if not path.is_file():
        return None
    tree = _read_json(path)
    if not isinstance(tree, dict) or "success" not in tree:
        raise D2VError(f"{path}: expected a validation report with a 'success' key")
    results = tree.get("results", [])
    return Validation(
        success=bool(tree["success"]),
        n_expectations=int(tree.get("n_expectations", len(results))),
        n_failed=int(tree.get("n_failed", sum(1 for r in results if not r.get("success", True)))),
        rows=tree.get("rows"),
    )


def _label_order(labels: set[str]) -> list[str]:
    """Class ids sort as numbers (2 before 10); class names alphabetically."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def read_confusion(path: Path) -> Confusion | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"actual", "predicted"} <= set(rows[0]):
        raise D2VError(f"{path}: expected columns actual,predicted, got {','.join(rows[0])}")
    if not rows:
        return None
    labels = _label_order({r["actual"] for r in rows} | {r["predicted"] for r in rows})
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for row in rows:
        counts[index[row["actual"]]][index[row["predicted"]]] += 1
    return Confusion(labels=tuple(labels), counts=tuple(tuple(r) for r in counts))
