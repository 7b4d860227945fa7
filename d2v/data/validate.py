"""Validation of the prepared data: GX suites per modality -> reports/validation/<modality>.json.

Facts that GX cannot read from a CSV (can a shard be loaded, does it have the promised shape, does
a test text appear in train) are computed here into frame columns holding either None or an error
string naming the offending file or id; GX then expects those columns to be null, so the report
and the failure message carry the offending values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from d2v.core.types import SPEECH_SAMPLE_RATE
from d2v.data.gx import Check, run_checks
from d2v.atomic import atomic_write_json
from d2v.data.prepare_speech import MAX_LABELLED_SECONDS
from d2v.errors import D2VError

SPLITS = {"image": ["train", "valid", "test"],
          "speech": ["train", "valid", "asr_train", "asr_valid", "asr_test", "asr_real"]}  # fmt: skip
MAX_CLASS_FRACTION = 0.6  # no class may dominate a split beyond this
MIN_ROWS_FOR_BALANCE = 100  # smaller splits are too noisy to judge class balance on


class ValidationFailed(D2VError):
    """Raised when any expectation fails; the message names file, expectation and examples."""


def validate(modality: str, prepared_dir: str | Path, report_path: str | Path, max_seconds: float = 60.0) -> dict:
    root = Path(prepared_dir)
    builders = {"image": _image, "speech": lambda r: _speech(r, max_seconds), "text": _text}
    try:
        frames, checks = builders[modality](root)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"{root}: cannot read the prepared {modality} data: {exc}") from exc
    records = run_checks(modality, frames, checks)
    failed = [r for r in records if not r["success"]]
    report = {"modality": modality, "success": not failed, "n_expectations": len(records),
              "n_failed": len(failed), "rows": {k: len(v) for k, v in frames.items()}, "results": records}  # fmt: skip
    atomic_write_json(report_path, report)
    if failed:
        lines = [f"{r['file']}: {r['expectation']}({_arg(r)}) failed; unexpected={r['unexpected_count']} "
                 f"observed={r['observed_value']} examples={r['examples']}" for r in failed[:5]]  # fmt: skip
        raise ValidationFailed(f"validation of {modality} failed ({len(failed)} of {len(records)}); " + "; ".join(lines))
    return report


def _arg(record: dict) -> str:
    return str(record["kwargs"].get("column", ""))


def _meta(root: Path) -> dict:
    return json.loads((root / "meta.json").read_text(encoding="utf-8"))


def _shard_errors(root: Path, manifest: pd.DataFrame, check_row: callable) -> pd.DataFrame:
    rows = []
    for shard, group in manifest.groupby("shard"):
        try:
            array = np.load(root / shard, mmap_mode="r")
            error = check_row(shard, array, group)
        except (OSError, ValueError) as exc:
            error = f"{root / shard}: cannot load ({exc})"
        rows.append({"shard": shard, "error": error})
    return pd.DataFrame(rows, columns=["shard", "error"]).astype(object)


def _split_frame(manifest: pd.DataFrame, splits: list[str], label: str | None) -> pd.DataFrame:
    rows = []
    for split in splits:
        part = manifest[manifest["split"] == split]
        judged = label and len(part) >= MIN_ROWS_FOR_BALANCE
        frac = float(part[label].value_counts(normalize=True).max()) if judged else 0.0
        rows.append({"split": split, "count": len(part), "max_class_fraction": frac})
    return pd.DataFrame(rows)


def _common(name: str, file: str, splits: list[str]) -> list[Check]:
    return [
        Check(name, file, lambda e: e.ExpectColumnValuesToBeUnique(column="id")),
        Check(name, file, lambda e: e.ExpectColumnValuesToNotBeNull(column="id")),
        Check(name, file, lambda e: e.ExpectColumnValuesToBeInSet(column="split", value_set=splits)),
    ]


def _image(root: Path) -> tuple[dict, list[Check]]:
    meta, file = _meta(root), str(root / "manifest.csv")
    manifest = pd.read_csv(file, dtype={"id": str, "split": str, "shard": str})
    size, channels, n = meta["height"], meta["channels"], meta["num_classes"]

    def shard_check(shard, array, group):
        want = (len(group), size, size, channels)
        if array.dtype != np.uint8 or array.shape != want:
            return f"{root / shard}: {array.dtype} {array.shape}, expected uint8 {want}"
        return None

    frames = {"manifest": manifest, "shards": _shard_errors(root, manifest, shard_check),
              "splits": _split_frame(manifest, SPLITS["image"], "label")}  # fmt: skip
    checks = _common("manifest", file, SPLITS["image"]) + [
        Check("manifest", file, lambda e: e.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=n - 1)),
        Check("manifest", file, lambda e: e.ExpectColumnValuesToBeInSet(column="height", value_set=[size])),
        Check("manifest", file, lambda e: e.ExpectColumnValuesToBeInSet(column="width", value_set=[size])),
        Check("shards", str(root), lambda e: e.ExpectColumnValuesToBeNull(column="error")),
        Check("splits", file, lambda e: e.ExpectColumnValuesToBeBetween(column="count", min_value=1)),
        Check("splits", file, lambda e: e.ExpectColumnValuesToBeBetween(column="max_class_fraction", max_value=MAX_CLASS_FRACTION)),
    ]  # fmt: skip
    return frames, checks


def _speech(root: Path, max_seconds: float) -> tuple[dict, list[Check]]:
    meta, file = _meta(root), str(root / "manifest.csv")
    manifest = pd.read_csv(file, dtype={"id": str, "split": str, "transcript": str, "speaker": str}, keep_default_na=False)

    def shard_check(shard, array, group):
        end = int((group["offset"] + group["n_samples"]).max())
        if array.dtype != np.int16 or array.ndim != 1 or len(array) != end:
            return f"{root / shard}: {array.dtype} {array.shape}, expected int16 ({end},)"
        return None

    labelled = manifest[manifest["split"].str.startswith("asr_")]
    train_texts = set(labelled.loc[labelled["split"] == "asr_train", "transcript"])
    test = labelled[labelled["split"].isin(["asr_test", "asr_real"])]
    leaks = [f"{i}: {t!r}" for i, t in zip(test["id"], test["transcript"]) if t in train_texts]
    train_speakers = set(labelled.loc[labelled["split"] == "asr_train", "speaker"])
    held = set(meta.get("test_speakers", []))
    frames = {
        "manifest": manifest, "labelled": labelled,
        "unlabelled": manifest[~manifest["split"].str.startswith("asr_")],
        "shards": _shard_errors(root, manifest, shard_check),
        "meta": pd.DataFrame([{"sample_rate": meta["sample_rate"], "speaker_leak": sorted(held & train_speakers) or None}]),
        "leaks": pd.DataFrame({"leak": leaks or [None]}).astype(object),
        "splits": _split_frame(manifest, ["train", "valid"], None),
    }  # fmt: skip
    lo, hi = int(0.5 * SPEECH_SAMPLE_RATE), int(max_seconds * SPEECH_SAMPLE_RATE) + 1
    hi_labelled = int(MAX_LABELLED_SECONDS * SPEECH_SAMPLE_RATE)
    checks = _common("manifest", file, SPLITS["speech"]) + [
        Check("unlabelled", file, lambda e: e.ExpectColumnValuesToBeBetween(column="n_samples", min_value=lo, max_value=hi)),
        Check("labelled", file, lambda e: e.ExpectColumnValuesToBeBetween(column="n_samples", min_value=lo, max_value=hi_labelled)),
        Check("manifest", file, lambda e: e.ExpectColumnValueLengthsToBeBetween(column="speaker", min_value=1)),
        Check("labelled", file, lambda e: e.ExpectColumnValueLengthsToBeBetween(column="transcript", min_value=1)),
        Check("shards", str(root), lambda e: e.ExpectColumnValuesToBeNull(column="error")),
        Check("meta", str(root / "meta.json"), lambda e: e.ExpectColumnValuesToBeInSet(column="sample_rate", value_set=[SPEECH_SAMPLE_RATE])),
        Check("meta", str(root / "meta.json"), lambda e: e.ExpectColumnValuesToBeNull(column="speaker_leak")),
        Check("leaks", file, lambda e: e.ExpectColumnValuesToBeNull(column="leak")),
        Check("splits", file, lambda e: e.ExpectColumnValuesToBeBetween(column="count", min_value=1)),
    ]  # fmt: skip
    return frames, checks


def _text(root: Path) -> tuple[dict, list[Check]]:
    meta = _meta(root)
    vocab = meta["vocab_size"]
    streams = []
    for split in ("train", "valid"):
        path = root / f"tokens-{split}.bin"
        tokens = np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r")
        offsets = np.load(root / f"offsets-{split}.npy")
        error = None if int(offsets[-1]) == len(tokens) else f"{path}: {len(tokens)} ids, offsets say {int(offsets[-1])}"
        streams.append({"file": str(path), "n_tokens": len(tokens), "max_id": int(tokens.max()) if len(tokens) else -1, "error": error})
    frames = {"streams": pd.DataFrame(streams).astype({"error": object})}
    checks = [
        Check("streams", str(root), lambda e: e.ExpectColumnValuesToBeBetween(column="max_id", min_value=0, max_value=vocab - 1)),
        Check("streams", str(root), lambda e: e.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1)),
        Check("streams", str(root), lambda e: e.ExpectColumnValuesToBeNull(column="error")),
    ]  # fmt: skip
    for task, info in meta["tasks"].items():
        frames_task, checks_task = _task(root, task, info)
        frames |= frames_task
        checks += checks_task
    return frames, checks


def _task(root: Path, task: str, info: dict) -> tuple[dict, list[Check]]:
    file = str(root / "tasks" / f"{task}.csv")
    rows = pd.read_csv(file, dtype={"id": str, "split": str, "text_a": str, "text_b": str}, keep_default_na=False)
    train = set(zip(rows.loc[rows.split == "train", "text_a"], rows.loc[rows.split == "train", "text_b"]))
    test = rows[rows.split == "test"]
    leaks = [f"{i}: {a[:60]!r}" for i, a, b in zip(test["id"], test["text_a"], test["text_b"]) if (a, b) in train]
    regression = info["num_classes"] == 1
    frames = {task: rows, f"{task}.leaks": pd.DataFrame({"leak": leaks or [None]}).astype(object),
              f"{task}.splits": _split_frame(rows, ["train", "valid", "test"], None if regression else "label")}  # fmt: skip
    checks = _common(task, file, ["train", "valid", "test"]) + [
        Check(task, file, lambda e: e.ExpectColumnValueLengthsToBeBetween(column="text_a", min_value=1)),
        Check(f"{task}.leaks", file, lambda e: e.ExpectColumnValuesToBeNull(column="leak")),
        Check(f"{task}.splits", file, lambda e: e.ExpectColumnValuesToBeBetween(column="count", min_value=1)),
    ]  # fmt: skip
    if info["pair"]:
        checks.append(Check(task, file, lambda e: e.ExpectColumnValueLengthsToBeBetween(column="text_b", min_value=1)))
    if not regression:
        n = info["num_classes"]
        checks += [
            Check(task, file, lambda e: e.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=n - 1)),
            Check(f"{task}.splits", file, lambda e: e.ExpectColumnValuesToBeBetween(column="max_class_fraction", max_value=MAX_CLASS_FRACTION)),
        ]  # fmt: skip
    return frames, checks
