"""The Backend protocol, checked identically on file:// and s3:// (moto)."""

from __future__ import annotations

from pathlib import Path

import pytest

from d2v.artifacts.backend import open_backend
from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import ArtifactError, ArtifactNotFoundError, RunExistsError
from d2v.artifacts.interface import Backend
from d2v.artifacts.store import ArtifactStore


@pytest.fixture
def backend(store: ArtifactStore) -> Backend:
    return store.backend


def test_bytes_and_files_round_trip(backend: Backend, tmp_path: Path) -> None:
    backend.put_bytes("a/b.txt", b"hello")
    assert backend.get_bytes("a/b.txt") == b"hello" and backend.exists("a/b.txt")
    assert not backend.exists("a/missing")
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x01" * 3000)
    moved: list[int] = []
    backend.put_file("a/c.bin", src, moved.append)
    backend.get_file("a/c.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes() and sum(moved) == 3000
    with pytest.raises(ArtifactNotFoundError):
        backend.get_bytes("a/missing")


def test_list_is_a_plain_prefix_match_in_key_order(backend: Backend) -> None:
    for key in ("runs/ab/x", "runs/a/y", "runs/a/sub/z", "pointers/image/latest.json"):
        backend.put_bytes(key, key.encode())
    assert [(o.key, o.size) for o in backend.list("runs/a/")] == [("runs/a/sub/z", 12),
                                                                   ("runs/a/y", 8)]
    assert [o.key for o in backend.list("runs/a")] == ["runs/a/sub/z", "runs/a/y", "runs/ab/x"]
    assert list(backend.list("nothing/")) == []


def test_create_if_absent_refuses_an_existing_key(backend: Backend) -> None:
    backend.put_bytes("runs/r/manifest.json", b"first", overwrite=False)
    with pytest.raises(RunExistsError):
        backend.put_bytes("runs/r/manifest.json", b"second", overwrite=False)
    assert backend.get_bytes("runs/r/manifest.json") == b"first"
    backend.put_bytes("pointers/x.json", b"1")
    backend.put_bytes("pointers/x.json", b"2")  # pointers are mutable
    assert backend.get_bytes("pointers/x.json") == b"2"


def test_unsupported_uris_and_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="'gs://x' is not supported"):
        open_backend(ArtifactsConfig(uri="gs://x"))
    with pytest.raises(ArtifactError, match="names no directory"):
        open_backend(ArtifactsConfig(uri="file://"))
    local = open_backend(ArtifactsConfig(uri=f"file://{tmp_path}"))
    with pytest.raises(ArtifactError, match="invalid object key"):
        local.put_bytes("../outside", b"x")

