"""GLUE task archives (the official <TASK>.zip layout): train.tsv -> train/valid, dev -> test.

GLUE's own test files carry no labels, so GLUE dev is our test split and a seeded fraction of GLUE
train is held out as valid. Labels become ints (classification) or floats (STS-B regression).
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from d2v.data.config import GlueSource
from d2v.data.io import assign_split
from d2v.errors import D2VError


@dataclass(frozen=True)
class GlueTask:
    dev_file: str
    header: bool
    text_a: str | int  # column name (header) or index (no header)
    text_b: str | int | None
    label: str | int
    label_names: tuple[str, ...] | None  # None = regression


GLUE_TASKS: dict[str, GlueTask] = {
    "CoLA": GlueTask("dev.tsv", False, 3, None, 1, ("0", "1")),
    "SST-2": GlueTask("dev.tsv", True, "sentence", None, "label", ("0", "1")),
    "MRPC": GlueTask("dev.tsv", True, "#1 String", "#2 String", "Quality", ("0", "1")),
    "QQP": GlueTask("dev.tsv", True, "question1", "question2", "is_duplicate", ("0", "1")),
    "STS-B": GlueTask("dev.tsv", True, "sentence1", "sentence2", "score", None),
    "MNLI": GlueTask("dev_matched.tsv", True, "sentence1", "sentence2", "gold_label",
                     ("entailment", "neutral", "contradiction")),
    "QNLI": GlueTask("dev.tsv", True, "question", "sentence", "label", ("entailment", "not_entailment")),
    "RTE": GlueTask("dev.tsv", True, "sentence1", "sentence2", "label", ("entailment", "not_entailment")),
    "WNLI": GlueTask("dev.tsv", True, "sentence1", "sentence2", "label", ("0", "1")),
}  # fmt: skip


def read_glue_tasks(cfg: GlueSource, seed: int, archive_dir: Path) -> tuple[dict[str, list], dict]:
    tasks, meta = {}, {}
    for name in cfg.tasks:
        if name not in GLUE_TASKS:
            raise D2VError(f"data.text.glue.tasks: unknown task {name!r} (known: {', '.join(GLUE_TASKS)})")
        spec, archive = GLUE_TASKS[name], archive_dir / f"{name}.zip"
        rows = []
        for split_file, is_dev in (("train.tsv", False), (spec.dev_file, True)):
            for i, (a, b, label) in enumerate(_read_tsv(archive, f"{name}/{split_file}", spec)):
                key = f"{name}-{'dev' if is_dev else 'train'}-{i}"
                split = "test" if is_dev else assign_split(key, seed, cfg.valid_fraction)
                rows.append((key, split, a, b, label))
        tasks[name.lower().replace("-", "")] = rows
        meta[name.lower().replace("-", "")] = {
            "num_classes": len(spec.label_names) if spec.label_names else 1,
            "pair": spec.text_b is not None,
            "label_names": list(spec.label_names or ()),
        }
    return tasks, meta


def _read_tsv(archive: Path, member: str, spec: GlueTask) -> list[tuple[str, str, float | int]]:
    try:
        with zipfile.ZipFile(archive) as zf:
            raw = zf.read(member).decode("utf-8")
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise D2VError(f"{archive}: cannot read {member} ({exc})") from exc
    reader = csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader) if spec.header else None
    col = (lambda c: header.index(c)) if header else (lambda c: c)  # noqa: E731
    try:
        ia, il = col(spec.text_a), col(spec.label)
        ib = col(spec.text_b) if spec.text_b is not None else None
    except ValueError as exc:
        raise D2VError(f"{archive}:{member}: missing column ({exc})") from None
    rows = []
    for line_no, fields in enumerate(reader, 2 if header else 1):
        if len(fields) <= max(ia, il, ib or 0):
            continue  # GLUE's QQP/MNLI have a few malformed rows; the official loaders skip them too
        value = fields[il]
        if spec.label_names is None:
            label: float | int = float(value)
        elif value in spec.label_names:
            label = spec.label_names.index(value)
        else:
            raise D2VError(f"{archive}:{member}:{line_no}: label {value!r} not in {list(spec.label_names)}")
        rows.append((fields[ia], fields[ib] if ib is not None else "", label))
    return rows
