from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from d2v.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ChecksumMismatchError,
    RunExistsError,
)
from d2v.artifacts.backend import LocalBackend
from d2v.atomic import TMP_MARKER
from d2v.artifacts.manifest import sha256_file
from d2v.artifacts.store import ArtifactStore, Metric, collect_files, new_run_id, run_key

FILES = {"metrics.json": b'{"top1": 0.84}', "model/ckpt.pt": b"\x00weights" * 100, "notes.md": b""}


@pytest.fixture
def local_files(tmp_path: Path, make_files: Callable[..., dict[str, Path]]) -> dict[str, Path]:
    return make_files(tmp_path / "src", FILES)


def test_publish_writes_files_and_a_manifest_whose_checksums_match_the_objects(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    manifest = store.publish(local_files, run_id="run-1", params={"seed": 3},
                             extra={"decision": "promoted"})
    assert [f.path for f in manifest.files] == sorted(FILES)
    for entry in manifest.files:
        stored = store.backend.get_bytes(run_key("run-1", entry.path))
        assert stored == FILES[entry.path]
        assert entry.size == len(stored) and entry.sha256 == sha256_file(local_files[entry.path])
    reread = store.manifest("run-1")
    assert reread == manifest
    assert reread.provenance.params == {"seed": 3} and reread.extra == {"decision": "promoted"}
    assert set(reread.provenance.versions) == {"python", "torch", "d2v", "dvc", "prefect"}


def test_manifest_is_written_last(store: ArtifactStore, local_files: dict[str, Path]) -> None:
    store.publish(local_files, run_id="ordered")
    keys = [info.key for info in store.backend.list("runs/ordered/")]
    assert "runs/ordered/manifest.json" in keys
    # Hook the backend: record the order of writes of a second publish.
    order: list[str] = []
    real_put_file, real_put_bytes = store.backend.put_file, store.backend.put_bytes
    real_put_bytes_if = store.backend.put_bytes_if
    store.backend.put_file = lambda k, p, cb=None, **kw: (order.append(k), real_put_file(k, p, cb, **kw))  # type: ignore[method-assign]
    store.backend.put_bytes = lambda k, d, overwrite=True: (order.append(k), real_put_bytes(k, d, overwrite=overwrite))  # type: ignore[method-assign]
    store.backend.put_bytes_if = lambda k, d, expected_tag: (order.append(k), real_put_bytes_if(k, d, expected_tag=expected_tag))  # type: ignore[method-assign]
    store.publish(local_files, run_id="ordered-2", modality="text")
    assert order[-2:] == ["runs/ordered-2/manifest.json", "pointers/text/latest.json"]
    assert len(order) == len(FILES) + 2


def test_publishing_to_an_existing_run_id_is_refused(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    store.publish(local_files, run_id="taken")
    before = store.manifest("taken")
    with pytest.raises(RunExistsError, match="taken already exists"):
        store.publish({"other.txt": local_files["notes.md"]}, run_id="taken")
    assert store.manifest("taken") == before


def test_a_partial_run_without_manifest_is_invisible_and_its_id_stays_taken(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    store.backend.put_file("runs/partial/metrics.json", local_files["metrics.json"])
    store.publish(local_files, run_id="complete")
    assert [r.run_id for r in store.list_runs()] == ["complete"]
    with pytest.raises(ArtifactNotFoundError, match="partial: not found"):
        store.download("partial", Path("unused"))
    with pytest.raises(RunExistsError, match="incomplete publish"):
        store.publish(local_files, run_id="partial")


def test_list_runs_reports_sizes_without_the_manifest(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    store.publish(local_files, run_id="a")
    store.publish({"x": local_files["metrics.json"]}, run_id="b")
    runs = {r.run_id: r for r in store.list_runs()}
    assert runs["a"].n_files == 3 and runs["a"].size == sum(len(v) for v in FILES.values())
    assert runs["b"].n_files == 1 and runs["b"].size == len(FILES["metrics.json"])


def test_download_restores_every_file_or_one(
    store: ArtifactStore, local_files: dict[str, Path], tmp_path: Path
) -> None:
    store.publish(local_files, run_id="dl")
    written = store.download("dl", tmp_path / "out")
    assert {p.relative_to(tmp_path / "out").as_posix(): p.read_bytes() for p in written} == FILES
    only = store.download("dl", tmp_path / "one", path="model/ckpt.pt")
    assert [p.read_bytes() for p in only] == [FILES["model/ckpt.pt"]]
    with pytest.raises(ArtifactError, match="no file 'missing'"):
        store.download("dl", tmp_path / "x", path="missing")


def test_download_detects_an_object_corrupted_behind_the_stores_back(
    store: ArtifactStore, local_files: dict[str, Path], tmp_path: Path
) -> None:
    store.publish(local_files, run_id="corrupt")
    _tamper(store, run_key("corrupt", "model/ckpt.pt"), b"tampered")
    with pytest.raises(ChecksumMismatchError, match="model/ckpt.pt: sha256 .* does not match"):
        store.download("corrupt", tmp_path / "out")
    # Nothing half-verified is left behind under the final name (nor as a temporary).
    assert not (tmp_path / "out" / "model" / "ckpt.pt").exists()
    assert list((tmp_path / "out" / "model").iterdir()) == []


def test_pointers_latest_follows_publishes_and_champion_records_the_metric(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    assert store.pointer("image", "latest") is None and store.pointers() == []
    store.publish(local_files, run_id="first", modality="image")
    store.publish(local_files, run_id="second", modality="image")
    assert store.resolve("latest:image") == "second"
    champion = store.promote("first", "image", Metric("top1", 0.81))
    assert store.pointer("image", "champion") == champion
    assert store.resolve("champion:image") == "first"
    assert champion.metric == Metric("top1", 0.81)
    raw = json.loads(store.backend.get_bytes("pointers/image/champion.json"))
    assert raw["run_id"] == "first" and raw["metric"] == {"name": "top1", "value": 0.81}


def test_only_complete_runs_can_be_promoted(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    store.backend.put_file("runs/half/metrics.json", local_files["metrics.json"])
    with pytest.raises(ArtifactNotFoundError):
        store.promote("half", "speech", Metric("wer", 0.3))
    assert store.pointer("speech", "champion") is None


@pytest.mark.parametrize("bad_id", ["", "../x", "a/b", "-lead", "x" * 200, "latest:image"])
def test_bad_run_ids_are_rejected(store: ArtifactStore, local_files: dict[str, Path],
                                  bad_id: str) -> None:
    with pytest.raises(ArtifactError, match="run id"):
        store.publish(local_files, run_id=bad_id)


def test_bad_file_names_and_modalities_are_rejected(
    store: ArtifactStore, local_files: dict[str, Path]
) -> None:
    with pytest.raises(ArtifactError, match="invalid file path '../escape'"):
        store.publish({"../escape": local_files["notes.md"]})
    with pytest.raises(ArtifactError, match="reserved"):
        store.publish({"manifest.json": local_files["notes.md"]})
    with pytest.raises(ArtifactError, match="modality 'video'"):
        store.publish(local_files, modality="video")
    assert store.list_runs() == []


def test_generated_run_ids_are_unique_and_sort_by_time() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == len("20261124T153012Z-3fa9c1") for i in ids)


def test_collect_files_names_runs_relative_paths(
    tmp_path: Path, make_files: Callable[..., dict[str, Path]]
) -> None:
    make_files(tmp_path / "out", {"a.txt": b"a", "sub/b.txt": b"b"})
    (tmp_path / "c.txt").write_bytes(b"c")
    assert sorted(collect_files([tmp_path / "out"])) == ["a.txt", "sub/b.txt"]
    assert sorted(collect_files([tmp_path / "out", tmp_path / "c.txt"])) == [
        "c.txt", "out/a.txt", "out/sub/b.txt"]
    with pytest.raises(ArtifactError, match="given twice"):
        collect_files([tmp_path / "c.txt", tmp_path / "c.txt"])
    with pytest.raises(ArtifactError, match="no such file"):
        collect_files([tmp_path / "missing"])



def test_collect_files_leaves_out_unfinished_writes(
    tmp_path: Path, make_files: Callable[..., dict[str, Path]]
) -> None:
    # What a process killed inside an atomic write leaves beside its output (d2v.atomic's naming).
    make_files(tmp_path / "out", {"checkpoint.pt": b"x", f".checkpoint.pt{TMP_MARKER}0badf00d": b"half"})
    assert sorted(collect_files([tmp_path / "out"])) == ["checkpoint.pt"]

def _tamper(store: ArtifactStore, key: str, data: bytes) -> None:
    """Change a stored object behind d2v's back (bit rot, a stray writer): d2v itself refuses to."""
    backend = store.backend
    if isinstance(backend, LocalBackend):
        backend.root.joinpath(*key.split("/")).write_bytes(data)
    else:
        from d2v.artifacts.s3 import make_client

        make_client(backend.cfg).put_object(Bucket=backend.bucket, Key=backend._key(key), Body=data)


def test_run_objects_are_created_once_and_never_overwritten(
    store: ArtifactStore, local_files: dict[str, Path], tmp_path: Path
) -> None:
    store.publish(local_files, run_id="sealed")
    key, original = run_key("sealed", "model/ckpt.pt"), local_files["model/ckpt.pt"]
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the published bytes")
    with pytest.raises(RunExistsError, match="already exists with other content"):
        store.backend.put_file(key, other, sha256=sha256_file(other))
    with pytest.raises(RunExistsError):  # no checksum given: nothing to prove it is a retry
        store.backend.put_file(key, original)
    # A retry of the very upload that created the object (its answer lost) succeeds, changing nothing.
    store.backend.put_file(key, original, sha256=sha256_file(original))
    assert store.backend.get_bytes(key) == original.read_bytes()
