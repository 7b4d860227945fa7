"""d2v.atomic: the one way files are written: temporary name beside the target, fsync, os.replace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from d2v import atomic
from d2v.atomic import (
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    durable_replace,
    is_temporary,
)


def test_text_bytes_and_json(tmp_path: Path) -> None:
    assert atomic_write_text(tmp_path / "a" / "t.txt", "één\nline\n") == tmp_path / "a" / "t.txt"
    assert (tmp_path / "a" / "t.txt").read_bytes() == "één\nline\n".encode("utf-8")  # no newline translation
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "s.json", {"b": 1, "a": [1.5]})
    assert (tmp_path / "s.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    atomic_write_json(tmp_path / "o.json", {"b": 1, "a": 2}, sort_keys=False)
    assert list(json.loads((tmp_path / "o.json").read_text())) == ["b", "a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.bin", "o.json", "s.json"]


def test_fsync_comes_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "x.txt", "x")
    with atomic_path(tmp_path / "y.txt") as tmp:
        tmp.write_text("y")
    assert events == ["fsync", "replace", "fsync", "replace"]


def test_the_temporary_file_is_beside_the_target_and_marked(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "model.pt", "wb") as handle:
        names = [p.name for p in tmp_path.iterdir()]
        assert Path(handle.name).parent == tmp_path and len(names) == 1
        assert is_temporary(names[0]) and not (tmp_path / "model.pt").exists()  # nothing visible yet
        handle.write(b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"] and not is_temporary("model.pt")


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w", encoding="utf-8") as handle:
            handle.write("half")
            raise RuntimeError("killed mid-write")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("corrupt")
            raise RuntimeError("checksum mismatch")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_create_if_absent(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "manifest.json", b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(tmp_path / "manifest.json", b"second", overwrite=False)
    assert (tmp_path / "manifest.json").read_bytes() == b"first" and len(list(tmp_path.iterdir())) == 1


def test_writers_that_take_a_file_object(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "x.npy") as handle:
        np.save(handle, np.arange(3))  # a file object: no second ".npy" appended
    with atomic_open(tmp_path / "ckpt.pt") as handle:
        torch.save({"w": torch.ones(2)}, handle)
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "x.npy"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "y", "ab"):
            pass


def test_durable_replace_moves_a_finished_part_file(tmp_path: Path) -> None:
    part = tmp_path / "data.tar.gz.part"
    part.write_bytes(b"complete")
    durable_replace(part, tmp_path / "data.tar.gz")
    assert (tmp_path / "data.tar.gz").read_bytes() == b"complete" and not part.exists()


def test_atomic_dir_replaces_a_whole_directory_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "prepared"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "b.txt").write_text("2")
            raise RuntimeError("stage failed")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with atomic_dir(target) as staging:
        (staging / "c.txt").write_text("3")
    assert [p.name for p in target.iterdir()] == ["c.txt"] and [p.name for p in tmp_path.iterdir()] == ["prepared"]
