"""validate(): the saved suites through one Checkpoint per modality; broken fixtures name the expectation."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import d2v.data.gx as gx_runner
from d2v.config import load_params
from d2v.data.prepare_image import prepare_image
from d2v.data.validate import ValidationFailed, validate

REPO = Path(__file__).resolve().parents[2]
REPORT_KEYS = {"modality", "success", "n_expectations", "n_failed", "rows", "results"}


@pytest.fixture
def image_root(fashion_dir, tmp_path) -> Path:
    cfg = load_params(REPO / "params.yaml").data.image
    cfg = dataclasses.replace(cfg, fashion_mnist_dir=str(fashion_dir), train_size=40, valid_size=10, test_size=0,
                              shard_size=16)
    prepare_image(cfg, 0, tmp_path / "image")
    return tmp_path / "image"


def _speech(root: Path, rows: list[tuple], test_speakers: list[str]) -> Path:
    """A prepared speech directory: rows are (id, split, speaker, seconds, transcript); one shard per split."""
    root.mkdir(parents=True)
    lines, ends = ["id,split,speaker,n_samples,transcript,shard,offset"], {}
    for utt, split, speaker, seconds, transcript in rows:
        n, offset = int(seconds * 16000), ends.get(split, 0)
        lines.append(f"{utt},{split},{speaker},{n},{transcript},{split}-0000.npy,{offset}")
        ends[split] = offset + n
    for split, end in ends.items():
        np.save(root / f"{split}-0000.npy", np.zeros(end, np.int16))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    (root / "meta.json").write_text(json.dumps({"sample_rate": 16000, "dtype": "int16", "test_speakers": test_speakers}))
    return root


SPEECH_ROWS = [("u1", "train", "a", 2.0, ""), ("u2", "valid", "a", 1.0, ""),
               ("l1", "asr_train", "slt", 1.5, "hello there"), ("l2", "asr_test", "awb", 1.5, "good night")]


def _text(root: Path, vocab: int = 50, tokens: tuple[int, ...] = (2, 7, 9, 3), task_rows: str = "") -> Path:
    (root / "tasks").mkdir(parents=True)
    for split in ("train", "valid"):
        np.asarray(tokens, np.uint16).tofile(root / f"tokens-{split}.bin")
        np.save(root / f"offsets-{split}.npy", np.asarray([0, len(tokens)], np.int64))
    rows = task_rows or "1,train,a fox,the dog,1\n2,valid,a cat,the cow,0\n3,test,a hen,the pig,1\n"
    (root / "tasks" / "pairs.csv").write_text("id,split,text_a,text_b,label\n" + rows)
    tasks = {"pairs": {"num_classes": 2, "pair": True, "label_names": ["no", "yes"]}}
    (root / "meta.json").write_text(json.dumps({"dtype": "<u2", "vocab_size": vocab, "tasks": tasks}))
    return root


def test_valid_image_data_passes_and_builds_data_docs(image_root, tmp_path):
    report_path = tmp_path / "reports" / "image.json"
    report = validate("image", image_root, report_path)
    assert report["success"] and set(json.loads(report_path.read_text())) == REPORT_KEYS
    assert set(report["rows"]) == {"manifest", "shards", "class_shares"}
    assert (report["rows"]["manifest"], report["rows"]["shards"]) == (70, 6)  # 40 + 10 + 20 images, 16 a shard
    kinds = {r["expectation"] for r in report["results"]}
    assert {"expect_table_row_count_to_be_between", "expect_column_values_to_be_unique",
            "expect_compound_columns_to_be_unique", "expect_column_pair_values_to_be_equal",
            "expect_column_values_to_match_regex", "expect_column_distinct_values_to_contain_set"} <= kinds
    docs = tmp_path / "reports" / "data_docs" / "image"
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert all(name in index for name in ("image.manifest", "image.shards", "shared.class_shares"))
    assert (docs / "facts" / "shards.csv").is_file()
    (docs / "stale.html").write_text("from an older run")
    validate("image", image_root, report_path)
    assert not (docs / "stale.html").exists()


def _break_image(root: Path, how: str) -> None:
    manifest = root / "manifest.csv"
    lines = manifest.read_text().splitlines()
    if how == "duplicate id":
        lines[2] = lines[1].split(",")[0] + "," + lines[2].split(",", 1)[1]
    elif how == "label outside the classes":
        fields = lines[1].split(",")  # id,split,label,...
        lines[1] = ",".join(fields[:2] + ["10"] + fields[3:])
    elif how == "no rows":
        lines = lines[:1]
    manifest.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("how, expected", [
    ("duplicate id", "expect_column_values_to_be_unique(id) [suite image.manifest]"),
    ("label outside the classes", "expect_column_values_to_be_between(label) [suite image.manifest]"),
    ("no rows", "expect_table_row_count_to_be_between() [suite image.manifest]"),
])  # fmt: skip
def test_a_broken_image_fixture_fails_the_checkpoint_naming_the_expectation(image_root, tmp_path, how, expected):
    _break_image(image_root, how)
    with pytest.raises(ValidationFailed, match="manifest.csv: ") as info:
        validate("image", image_root, tmp_path / "reports" / "image.json")
    assert expected in str(info.value)
    assert (tmp_path / "reports" / "data_docs" / "image" / "index.html").is_file()  # the docs show the failure


def test_a_tightened_copy_of_a_suite_is_the_one_used(image_root, tmp_path, monkeypatch):
    suites = tmp_path / "suites"
    shutil.copytree(gx_runner.SUITES_DIR, suites)
    tree = json.loads((suites / "image.manifest.json").read_text())
    tree["expectations"].append({"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 69}})
    (suites / "image.manifest.json").write_text(json.dumps(tree))
    monkeypatch.setattr(gx_runner, "SUITES_DIR", suites)
    with pytest.raises(ValidationFailed, match=r"expect_table_row_count_to_be_between\(\) \[suite image.manifest\] "
                                               r"failed observed=70"):
        validate("image", image_root, tmp_path / "reports" / "image.json")


@pytest.mark.parametrize("rows, held, expected", [
    (SPEECH_ROWS, ["awb"], None),
    (SPEECH_ROWS[:2] + [("l1", "asr_train", "slt", 45.0, "hello there")] + SPEECH_ROWS[3:], ["awb"],
     "expect_column_values_to_be_between(n_samples) [suite speech.manifest]"),
    (SPEECH_ROWS[:3] + [("l2", "asr_test", "awb", 1.5, "hello there")], ["awb"],
     "expect_column_values_to_be_unique(transcript) [suite speech.transcript_overlap]"),
    (SPEECH_ROWS, ["slt"], "expect_column_values_to_not_be_in_set(speaker) [suite speech.manifest]"),
    (SPEECH_ROWS[:2] + [("l1", "asr_train", "slt", 1.5, "")] + SPEECH_ROWS[3:], ["awb"],
     "expect_column_value_lengths_to_be_between(transcript) [suite speech.manifest]"),
])  # fmt: skip
def test_speech_rules(tmp_path, rows, held, expected):
    root = _speech(tmp_path / "speech", rows, held)
    if expected is None:
        assert validate("speech", root, tmp_path / "speech.json", max_seconds=12.0)["success"]
        return
    with pytest.raises(ValidationFailed) as info:
        validate("speech", root, tmp_path / "speech.json", max_seconds=12.0)
    assert expected in str(info.value)


def test_a_truncated_speech_shard_is_named(tmp_path):
    root = _speech(tmp_path / "speech", SPEECH_ROWS, ["awb"])
    np.save(root / "train-0000.npy", np.zeros(100, np.int16))
    with pytest.raises(ValidationFailed, match=r"expect_column_pair_values_to_be_equal\(samples,manifest_end\) "
                                               r".*ids=\['train-0000.npy'\]"):
        validate("speech", root, tmp_path / "speech.json", max_seconds=12.0)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, None),
    ({"tokens": (2, 7, 50, 3)}, "expect_column_values_to_be_between(max_id) [suite text.streams]"),
    ({"task_rows": "1,train,a fox,the dog,1\n2,valid,a cat,the cow,0\n3,test,a fox,the dog,1\n"},
     "expect_compound_columns_to_be_unique(text_a,text_b) [suite text.pair_overlap.pairs]"),
    ({"task_rows": "1,train,a fox,,1\n2,valid,a cat,the cow,0\n3,test,a hen,the pig,1\n"},
     "expect_column_value_lengths_to_be_between(text_b) [suite text.task.pairs]"),
    ({"task_rows": "1,train,a fox,the dog,1\n2,valid,a cat,the cow,0\n3,test,a hen,the pig,2\n"},
     "expect_column_values_to_be_between(label) [suite text.labels.pairs]"),
])  # fmt: skip
def test_text_rules(tmp_path, kwargs, expected):
    root = _text(tmp_path / "text", **kwargs)
    if expected is None:
        report = validate("text", root, tmp_path / "text.json")
        assert report["success"] and "pairs.class_shares" in report["rows"]
        return
    with pytest.raises(ValidationFailed) as info:
        validate("text", root, tmp_path / "text.json")
    assert expected in str(info.value)
