"""Validation of the prepared data: the saved GX suites, one Checkpoint per modality.

The rules live in d2v/data/expectations/*.json (GX ExpectationSuites); this module only says which
table each suite checks and fills in the values the suites take from meta.json and params. GX reads
the prepared manifests and task tables as they are on disk. The few facts GX cannot read from a
table are computed here into small tables of plain values (facts/*.csv in the Data Docs folder):

    shards              what numpy reads from each .npy shard (GX cannot open .npy files)
    streams             length and id range of the binary token streams (likewise)
    class_shares        each label's share of its split (GX has no "largest class share" expectation)
    *_overlap           distinct train and test texts, one row per side: GX's uniqueness
                        expectation then finds a text on both sides (a cross-split join GX lacks)

Outputs: <reports_dir>/<modality>.json (a DVC metric the report reads) and the GX Data Docs site
<reports_dir>/data_docs/<modality>/index.html, rebuilt on every run, pass or fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from d2v.atomic import atomic_write_json
from d2v.audio import SPEECH_SAMPLE_RATE
from d2v.data.gx import Check, run_checkpoint
from d2v.data.prepare_speech import MAX_LABELLED_SECONDS, MIN_SECONDS
from d2v.data.text_rules import allowed_splits, expected_classes, task_rule
from d2v.errors import D2VError
from d2v.layout import data_docs_dir

IMAGE_READ = {"dtype": {"id": "str", "split": "str", "shard": "str"}}
SPEECH_READ = {"dtype": {"id": "str", "split": "str", "transcript": "str", "speaker": "str", "shard": "str"},
               "keep_default_na": False}  # fmt: skip
# An empty text_b is a value (single-text tasks); an empty label makes the label column text, which
# the label-range expectation then reports.
TASK_READ = {"dtype": {"id": "str", "split": "str", "text_a": "str", "text_b": "str"}, "keep_default_na": False}
FACTS_READ: dict = {}  # tables of numbers, names and error messages: pandas' defaults
# Texts must stay as written: pandas would read a transcript "NA" or "null" as missing.
OVERLAP_READ = {"dtype": {"id": "str", "side": "str", "transcript": "str", "text_a": "str", "text_b": "str"},
                "keep_default_na": False}  # fmt: skip
FACTS_DIR = "facts"
SPEECH_EXTRA_TEST = ("asr_real",)  # test splits beside asr_test when meta.json lists none (embedded)
Built = tuple[list[Check], dict[str, int]]  # the checks and the rows of each table


class ValidationFailed(D2VError):
    """Raised when any expectation fails; the message names file, expectation and examples."""


def validate(modality: str, prepared_dir: str | Path, report_path: str | Path, max_seconds: float = 60.0,
             docs_dir: str | Path | None = None) -> dict:  # fmt: skip
    """Run the modality's Checkpoint; write the JSON report and the Data Docs; raise if anything failed."""
    root, report_path = Path(prepared_dir), Path(report_path)
    docs_dir = Path(docs_dir) if docs_dir is not None else data_docs_dir(report_path.parent, modality)
    builders: dict[str, Callable[[Path, Path], Built]] = {
        "image": _image, "speech": lambda r, f: _speech(r, f, max_seconds), "text": _text}  # fmt: skip
    # Built in place, not staged: GX writes the path of every table it read into the pages, so the
    # fact tables must already sit where they stay. The site is a view rebuilt on every run (DVC
    # records it only when the stage succeeds); the report below, the stage's gate, is atomic.
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    try:
        checks, rows = builders[modality](root, docs_dir / FACTS_DIR)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"{root}: cannot read the prepared {modality} data: {exc}") from exc
    records = run_checkpoint(modality, checks, docs_dir)
    failed = [r for r in records if not r["success"]]
    report = {"modality": modality, "success": not failed, "n_expectations": len(records),
              "n_failed": len(failed), "rows": rows, "results": records}  # fmt: skip
    if modality == "image" and "layout" in _meta(root):  # file sources; the embedded report stays as it was
        report["dataset"] = _image_dataset(root)
    atomic_write_json(report_path, report)
    if failed:
        lines = [_failure_line(r) for r in failed[:5]]
        raise ValidationFailed(f"validation of {modality} failed ({len(failed)} of {len(records)}; "
                               f"Data Docs: {docs_dir / 'index.html'}); " + "; ".join(lines))  # fmt: skip
    return report


def _failure_line(r: dict) -> str:
    line = f"{r['file']}: {r['expectation']}({_columns(r['kwargs'])}) [suite {r['suite']}] failed"
    details = {"unexpected": r["unexpected_count"], "observed": _short(r["observed_value"]),
               "examples": [_short(v) for v in r["examples"]], "ids": r["ids"], "error": r["error"]}  # fmt: skip
    return line + "".join(f" {key}={value}" for key, value in details.items() if value not in (None, []))


def _columns(kwargs: dict) -> str:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    return ",".join(str(kwargs[k]) for k in ("column_A", "column_B") if k in kwargs)


def _short(value: object, width: int = 80) -> object:
    text = repr(value)
    return value if len(text) <= width else text[: width - 3] + "..."


def _meta(root: Path) -> dict:
    return json.loads((root / "meta.json").read_text(encoding="utf-8"))


def _facts(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def _shard_facts(root: Path, manifest: pd.DataFrame, describe: Callable[[np.ndarray, pd.DataFrame], dict]) -> pd.DataFrame:
    """One row per shard the manifest names: what numpy reads, beside what the manifest promises."""
    rows = []
    for shard, group in manifest.groupby("shard", sort=True):
        row = {"id": shard, "load_error": None}
        try:
            array = np.load(root / shard, mmap_mode="r")
            row |= {"dtype": str(array.dtype), "ndim": array.ndim} | describe(array, group)
        except (OSError, ValueError) as exc:
            row["load_error"] = f"{root / shard}: cannot load ({exc})"
        rows.append(row)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["id", "load_error"])


def _class_shares(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, label): the label's share of its split and the split's size."""
    counts = rows.groupby(["split", "label"], sort=True).size().rename("count").reset_index()
    counts["split_rows"] = counts.groupby("split")["count"].transform("sum")
    counts["share"] = counts["count"] / counts["split_rows"]
    counts.insert(0, "id", counts["split"] + "/label=" + counts["label"].astype(str))
    return counts


def _overlap(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Distinct `columns` values of each side, one row per (side, value); id = the first row carrying it."""
    sides = [part.drop_duplicates(columns).assign(side=side)[["id", "side", *columns]]
             for side, part in (("train", train), ("test", test))]  # fmt: skip
    return pd.concat(sides, ignore_index=True)


def _image_dataset(root: Path) -> dict:
    """What the report says about images from files beyond the checks: where they came from, the size
    and content digest of each split, and every skipped image."""
    meta = _meta(root)
    keys = ("source", "layout", "root", "splits", "content_sha256", "skipped")
    return {key: meta[key] for key in keys if key in meta}


def _image(root: Path, facts: Path) -> Built:
    meta, file = _meta(root), str(root / "manifest.csv")
    manifest = pd.read_csv(file, **IMAGE_READ)

    def describe(array: np.ndarray, group: pd.DataFrame) -> dict:
        shape = tuple(array.shape) + (None,) * (4 - array.ndim)
        return dict(zip(("rows", "height", "width", "channels"), shape[:4])) | {"manifest_rows": len(group)}

    shards = _shard_facts(root, manifest, describe)
    shares = _class_shares(manifest)
    size = {"height": meta["height"], "width": meta["height"]}  # square images, as the loaders assume
    checks = [
        Check("manifest", Path(file), file, "image.manifest", {"max_label": meta["num_classes"] - 1, **size}, IMAGE_READ),
        Check("shards", _facts(facts, "shards", shards), str(root), "image.shards", {**size, "channels": meta["channels"]}, FACTS_READ),
        Check("class_shares", _facts(facts, "class_shares", shares), file, "shared.class_shares", {}, FACTS_READ),
    ]  # fmt: skip
    return checks, {"manifest": len(manifest), "shards": len(shards), "class_shares": len(shares)}


def _speech(root: Path, facts: Path, max_seconds: float) -> Built:
    meta, file = _meta(root), str(root / "manifest.csv")
    manifest = pd.read_csv(file, **SPEECH_READ)

    def describe(array: np.ndarray, group: pd.DataFrame) -> dict:
        return {"samples": len(array), "manifest_end": int((group["offset"] + group["n_samples"]).max())}

    shards = _shard_facts(root, manifest, describe)
    header = pd.DataFrame([{"id": "meta.json", "sample_rate": meta.get("sample_rate"), "dtype": meta.get("dtype")}])
    overlap = _overlap(manifest[manifest["split"] == "asr_train"],
                       manifest[manifest["split"].isin(_speech_test_splits(meta))], ["transcript"])  # fmt: skip
    limits = {"min_samples": int(MIN_SECONDS * SPEECH_SAMPLE_RATE),
              "max_samples": int(max_seconds * SPEECH_SAMPLE_RATE) + 1,
              "max_labelled_samples": int(MAX_LABELLED_SECONDS * SPEECH_SAMPLE_RATE),
              "test_speakers": list(meta.get("test_speakers", []))}  # fmt: skip
    checks = [
        Check("manifest", Path(file), file, "speech.manifest", limits, SPEECH_READ),
        Check("shards", _facts(facts, "shards", shards), str(root), "speech.shards", {}, FACTS_READ),
        Check("meta", _facts(facts, "meta", header), str(root / "meta.json"), "speech.meta",
              {"sample_rate": SPEECH_SAMPLE_RATE}, FACTS_READ),
        Check("transcript_overlap", _facts(facts, "transcript_overlap", overlap), file, "speech.transcript_overlap",
              {}, OVERLAP_READ),
    ]  # fmt: skip
    rows = {"manifest": len(manifest), "shards": len(shards), "meta": 1, "transcript_overlap": len(overlap)}
    rows |= {f"manifest.{split}": int(n) for split, n in manifest["split"].value_counts(sort=False).sort_index().items()}
    return checks, rows


def _speech_test_splits(meta: dict) -> list[str]:
    """asr_test and every extra test split (LibriSpeech: one per evaluation subset)."""
    return ["asr_test", *meta.get("extra_test_splits", SPEECH_EXTRA_TEST)]


def _text(root: Path, facts: Path) -> Built:
    meta = _meta(root)
    streams = pd.DataFrame([_stream_facts(root, split, np.dtype(meta["dtype"])) for split in ("train", "valid")])
    checks = [Check("streams", _facts(facts, "streams", streams), str(root), "text.streams",
                    {"max_token_id": meta["vocab_size"] - 1}, FACTS_READ)]  # fmt: skip
    rows = {"streams": len(streams)}
    for task, info in meta["tasks"].items():
        task_checks, task_rows = _task(root, facts, task, info)
        checks += task_checks
        rows |= task_rows
    return checks, rows


def _stream_facts(root: Path, split: str, dtype: np.dtype) -> dict:
    path = root / f"tokens-{split}.bin"
    tokens = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
    offsets = np.load(root / f"offsets-{split}.npy")
    return {"id": path.name, "n_tokens": len(tokens), "offsets_end": int(offsets[-1]) if len(offsets) else 0,
            "min_id": int(tokens.min()) if len(tokens) else None, "max_id": int(tokens.max()) if len(tokens) else None}  # fmt: skip


def _task(root: Path, facts: Path, task: str, info: dict) -> Built:
    """The task table, its train/test overlap and its labels, under the task's rule (text_rules)."""
    path = root / "tasks" / f"{task}.csv"
    rows = pd.read_csv(path, **TASK_READ)
    rule, classes = task_rule(task), expected_classes(task, info["num_classes"])
    test_sides = rows["split"].str.startswith("test")  # MNLI's test_mismatched is a test side too
    overlap = _overlap(rows[rows["split"] == "train"], rows[test_sides], ["text_a", "text_b"])
    checks = [
        Check(task, path, str(path), "text.task", {"min_text_b_length": 1 if info["pair"] else 0}, TASK_READ,
              f"text.task.{task}"),
        Check(task, path, str(path), "text.splits", {"splits": allowed_splits(task)}, TASK_READ, f"text.splits.{task}"),
        Check(f"{task}.pair_overlap", _facts(facts, f"{task}.pair_overlap", overlap), str(path), "text.pair_overlap",
              {}, OVERLAP_READ, f"text.pair_overlap.{task}"),
    ]  # fmt: skip
    counts = {task: len(rows), f"{task}.pair_overlap": len(overlap)}
    if classes == 1 and rule.score_range is not None:  # regression: scores in range, no class balance
        low, high = rule.score_range
        checks.append(Check(task, path, str(path), "text.scores", {"min_score": low, "max_score": high}, TASK_READ,
                            f"text.scores.{task}"))  # fmt: skip
    if classes > 1:
        shares = _text_class_shares(rows, classes if rule.classes is not None else None)
        checks += [
            Check(task, path, str(path), "text.labels", {"max_label": classes - 1}, TASK_READ, f"text.labels.{task}"),
            Check(f"{task}.class_shares", _facts(facts, f"{task}.class_shares", shares), str(path),
                  "text.class_shares", {"min_share": rule.min_share, "max_share": rule.max_share}, FACTS_READ,
                  f"text.class_shares.{task}"),
        ]  # fmt: skip
        counts[f"{task}.class_shares"] = len(shares)
    return checks, counts


def _text_class_shares(rows: pd.DataFrame, classes: int | None) -> pd.DataFrame:
    """_class_shares, plus a 0-share row for each expected class a split lacks (when the task's rule
    names its classes): a lost class then fails the rule's minimum share."""
    shares = _class_shares(rows)
    if classes is None or shares.empty:
        return shares
    labels = pd.to_numeric(shares["label"], errors="coerce")
    missing = [{"split": split, "label": label, "count": 0, "split_rows": int(group["split_rows"].iloc[0]), "share": 0.0}
               for split, group in shares.groupby("split", sort=True)
               for label in range(classes) if label not in set(labels[group.index])]  # fmt: skip
    if not missing:
        return shares
    extra = pd.DataFrame(missing)
    extra.insert(0, "id", extra["split"] + "/label=" + extra["label"].astype(str))
    return pd.concat([shares, extra], ignore_index=True).sort_values(["split", "label"], ignore_index=True)
