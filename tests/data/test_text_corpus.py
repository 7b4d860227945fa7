"""Bring-your-own pretraining corpus (data.text.corpus.source: dir) and streaming tokenisation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from d2v.config import load_params
from d2v.core.types import EOS_ID
from d2v.data.config import TextCorpus
from d2v.data.io import assign_split
from d2v.data.prepare_text import _write_dir_corpus
from d2v.data.sources.corpus import corpus_files, read_documents, text_digest
from d2v.data.tokenizer import load_tokenizer, tokenize
from d2v.errors import D2VError


def corpus_config(corpus_dir: Path, max_lines: int = 0, field: str = "text"):
    committed = load_params("params.yaml").data.text
    return dataclasses.replace(committed, corpus=TextCorpus("dir", str(corpus_dir), field), corpus_max_lines=max_lines,
                               corpus_valid_fraction=0.2)  # fmt: skip


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    root = tmp_path / "corpus"
    (root / "nested").mkdir(parents=True)
    (root / "a.txt").write_text("first  document\nsecond document\n\nfirst document\n", encoding="utf-8")
    (root / "nested" / "b.jsonl").write_text(
        json.dumps({"text": "third\ndocument", "id": 1}) + "\n\n" + json.dumps({"text": "second document"}) + "\n")
    (root / "notes.md").write_text("not part of the corpus\n")
    return root


def test_documents_are_streamed_normalised_in_file_order(corpus_dir):
    files = corpus_files(corpus_dir)
    assert [p.name for p in files] == ["a.txt", "b.jsonl"]
    docs = list(read_documents(files, "text"))
    assert docs == ["first document", "second document", "first document", "third document", "second document"]


def test_dir_corpus_dedupes_holds_out_and_splits_by_hash(corpus_dir, tmp_path):
    cfg = corpus_config(corpus_dir)
    out = tmp_path / "out"
    out.mkdir()
    counts = _write_dir_corpus(out, cfg, 0, {text_digest("third document")})
    written = {s: (out / f"corpus-{s}.txt").read_text().splitlines() for s in ("train", "valid")}
    assert sorted(written["train"] + written["valid"]) == ["first document", "second document"]
    for split, lines in written.items():
        assert all(assign_split(t, 0, 0.2) in ({"valid"} if split == "valid" else {"train", "test"}) for t in lines)
    assert counts == {"corpus_train": len(written["train"]), "corpus_valid": len(written["valid"])}


def test_dir_corpus_cap_keeps_the_first_distinct_lines(corpus_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    counts = _write_dir_corpus(out, corpus_config(corpus_dir, max_lines=1), 0, set())
    assert counts["corpus_train"] + counts["corpus_valid"] == 1
    assert "first document\n" in (out / "corpus-train.txt").read_text() + (out / "corpus-valid.txt").read_text()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("bad.txt", b"fine line\ncaf\xe9 latin-1\n", r"bad.txt:2: not UTF-8 \(invalid continuation byte"),
        ("bad.jsonl", b'{"text": "ok"}\n{"body": "no text field"}\n', r"bad.jsonl:2: no string field 'text'"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', r"bad.jsonl:2: not a JSON line"),
    ],
)
def test_bad_corpus_files_are_named_with_their_line(tmp_path, name, data, message):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / name).write_bytes(data)
    with pytest.raises(D2VError, match=message):
        list(read_documents(corpus_files(tmp_path / "c"), "text"))


def test_missing_or_empty_corpus_dir_is_named(tmp_path):
    with pytest.raises(D2VError, match="is not a directory"):
        corpus_files(tmp_path / "nowhere")
    with pytest.raises(D2VError, match=r"no \*.txt or \*.jsonl files"):
        corpus_files(tmp_path)


def test_streaming_tokenisation_matches_a_whole_file_encode(tmp_path, capfd, monkeypatch):
    import d2v.data.tokenizer as tokenizer

    monkeypatch.setattr(tokenizer, "_ENCODE_BATCH", 7)  # many batches on a small corpus
    interim = tmp_path / "interim"
    (interim / "tasks").mkdir(parents=True)
    lines = [f"line {i} of a small streamed corpus with words {i % 13} and {i % 7}" for i in range(200)]
    (interim / "corpus-train.txt").write_text("\n".join(lines) + "\n")
    (interim / "corpus-valid.txt").write_text("\n".join(lines[:3]) + "\n")
    (interim / "meta.json").write_text(json.dumps({"tasks": {}, "source": "test"}))
    meta = tokenize(interim, tmp_path / "prepared", 300, 50, 0)
    sp = load_tokenizer(tmp_path / "prepared")
    expected = [t for ids in sp.encode(lines) for t in (*ids, EOS_ID)]
    tokens = np.fromfile(tmp_path / "prepared" / "tokens-train.bin", dtype=meta["dtype"])
    offsets = np.load(tmp_path / "prepared" / "offsets-train.npy")
    assert tokens.tolist() == expected and offsets[-1] == len(expected) and len(offsets) == len(lines) + 1
    assert tokens[offsets[5] : offsets[6]].tolist() == [*sp.encode(lines[5]), EOS_ID]
    err = capfd.readouterr().err
    assert "[tokenize text train] 200/200 lines (" in err and "ETA" in err and "on 50 of 200 lines" in err


def _interim_with_tasks(tmp_path: Path) -> Path:
    interim = tmp_path / "interim"
    (interim / "tasks").mkdir(parents=True)
    lines = [f"corpus line {i} about words {i % 11} and {i % 5}" for i in range(120)]
    (interim / "corpus-train.txt").write_text("\n".join(lines) + "\n")
    (interim / "corpus-valid.txt").write_text("\n".join(lines[:4]) + "\n")
    (interim / "tasks" / "pairs.csv").write_text(
        "id,split,text_a,text_b,label\n"
        "1,train,a verse here,the same verse,1\n2,test,a test verse,another test verse,0\n"
        '3,train,"a verse, with a comma",a neighbour,0\n4,valid,a valid verse,its pair,1\n'
        "8,train,a neighbour,a test verse,0\n")  # verses paired on both sides: the test one stays out
    (interim / "tasks" / "single.csv").write_text(
        "id,split,text_a,text_b,label\n5,train,a review of a film,,1\n6,test,a test review,,0\n7,train,a dull film,,0\n")
    tasks = {"pairs": {"num_classes": 2, "pair": True}, "single": {"num_classes": 2, "pair": False}}
    (interim / "meta.json").write_text(json.dumps({"tasks": tasks, "source": "test"}))
    return interim


TRAIN_TEXTS = ["a verse here", "the same verse", "a verse, with a comma", "a neighbour", "a neighbour", "a review of a film",
               "a dull film"]


def test_the_tasks_train_texts_follow_the_corpus_in_shuffled_copies(tmp_path):
    interim = _interim_with_tasks(tmp_path)
    plain = tokenize(interim, tmp_path / "plain", 300, 0, 0)
    meta = tokenize(interim, tmp_path / "adapted", 300, 0, 0, task_text_copies=2)
    plain_dir, adapted_dir = tmp_path / "plain", tmp_path / "adapted"
    # The tokenizer learns from the corpus alone; the valid stream is the corpus's.
    for name in ("spm.model", "tokens-valid.bin", "offsets-valid.npy"):
        assert (adapted_dir / name).read_bytes() == (plain_dir / name).read_bytes(), name
    sp = load_tokenizer(adapted_dir)
    tokens = np.fromfile(adapted_dir / "tokens-train.bin", dtype=meta["dtype"])
    offsets = np.load(adapted_dir / "offsets-train.npy")
    assert len(offsets) == 120 + 2 * len(TRAIN_TEXTS) + 1 and offsets[-1] == len(tokens) == meta["n_tokens"]["train"]
    plain_tokens = np.fromfile(plain_dir / "tokens-train.bin", dtype=meta["dtype"])
    assert tokens[: len(plain_tokens)].tolist() == plain_tokens.tolist()  # the corpus comes first, unchanged
    appended = [sp.decode(tokens[offsets[k] : offsets[k + 1] - 1].tolist()) for k in range(120, len(offsets) - 1)]
    first, second = appended[: len(TRAIN_TEXTS)], appended[len(TRAIN_TEXTS) :]
    assert sorted(first) == sorted(second) == sorted(TRAIN_TEXTS)  # every train text, no valid or test one
    assert first != second  # each copy in its own order
    assert meta["task_text_lines"] == 2 * len(TRAIN_TEXTS) and plain["task_text_lines"] == 0
    again = tokenize(interim, tmp_path / "again", 300, 0, 0, task_text_copies=2)
    assert again == meta and (tmp_path / "again" / "tokens-train.bin").read_bytes() == (adapted_dir / "tokens-train.bin").read_bytes()


def test_a_negative_copy_count_or_a_task_table_without_its_columns_is_named(tmp_path):
    interim = _interim_with_tasks(tmp_path)
    with pytest.raises(D2VError, match=r"data\.text\.corpus\.task_text_copies: -1"):
        tokenize(interim, tmp_path / "out", 300, 0, 0, task_text_copies=-1)
    (interim / "tasks" / "single.csv").write_text("id,label\n1,0\n")
    with pytest.raises(D2VError, match=r"single\.csv: cannot read the task's train texts .*split, text_a, text_b"):
        tokenize(interim, tmp_path / "out", 300, 0, 0, task_text_copies=1)
    assert not (tmp_path / "out").exists()  # nothing half-written
