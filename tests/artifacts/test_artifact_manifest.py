from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from d2v.artifacts.errors import ArtifactError
from d2v.artifacts.manifest import FileEntry, Manifest, Provenance, parse_manifest
from d2v.artifacts.provenance import collect_provenance, git_state
from d2v.config import to_mapping

PROVENANCE = Provenance(git_commit=None, git_dirty=None, dvc_lock_sha256=None, params={},
                        versions={"python": "3.11"}, hostname="h", platform="p")


def manifest_tree(**changes: object) -> dict:
    manifest = Manifest(format=1, run_id="r", created_at="2026-01-01T00:00:00Z", modality=None,
                        files=(FileEntry("a.txt", "0" * 64, 1),), provenance=PROVENANCE)
    return {**to_mapping(manifest), **changes}


def test_manifest_round_trips_through_json() -> None:
    tree = manifest_tree(extra={"decision": {"promoted": True, "scores": [0.8, 0.7]}})
    manifest = parse_manifest(json.dumps(tree).encode(), "m.json")
    assert parse_manifest(manifest.to_json(), "m.json") == manifest
    assert manifest.extra["decision"]["promoted"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"files": [{"path": "a", "sha256": "x"}]}, r"m.json: files\[0\].size: missing key"),
        ({"format": 9}, "format 9 is not supported"),
        ({"files": [{"path": "../up", "sha256": "x", "size": 1}]}, "invalid file path '../up'"),
        ({"surprise": 1}, "surprise: unknown key"),
    ],
)
def test_damaged_manifests_are_rejected_with_the_key_named(changes: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        parse_manifest(json.dumps(manifest_tree(**changes)).encode(), "m.json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        parse_manifest(b"{", "m.json")


def test_provenance_records_git_state_and_the_dvc_lock_hash(tmp_path: Path) -> None:
    assert git_state(tmp_path) == (None, None)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run([*git, "add", "dvc.lock"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    clean = collect_provenance({"seed": 1}, tmp_path)
    assert clean.git_commit is not None and len(clean.git_commit) == 40
    assert clean.git_dirty is False and clean.params == {"seed": 1}
    assert clean.dvc_lock_sha256 is not None and len(clean.dvc_lock_sha256) == 64
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    dirty = collect_provenance({}, tmp_path)
    assert dirty.git_dirty is True and dirty.dvc_lock_sha256 != clean.dvc_lock_sha256
