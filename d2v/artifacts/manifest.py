"""`manifest.json`: the list of a run's files (path, sha256, size) plus how the run was produced.

The manifest is the run's commit record: the store writes it last, and a run without one is
incomplete and invisible to readers. It is parsed back with the same strict loader as params.yaml,
so a damaged manifest fails with the offending key named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from d2v.data.io import sha256_file
from d2v.artifacts.errors import ArtifactError
from d2v.config import from_mapping, to_mapping
from d2v.errors import ConfigError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX path relative to the run directory
    sha256: str
    size: int


@dataclass(frozen=True)
class Provenance:
    """Enough to tell how a run was produced and to reproduce it."""

    git_commit: str | None
    git_dirty: bool | None
    dvc_lock_sha256: str | None
    params: dict[str, Any]
    versions: dict[str, str | None]  # python, torch, d2v, dvc, prefect
    hostname: str
    platform: str


@dataclass(frozen=True)
class Manifest:
    format: int
    run_id: str
    created_at: str  # ISO 8601, UTC
    modality: str | None
    files: tuple[FileEntry, ...]
    provenance: Provenance
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def entry(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise ArtifactError(
            f"run {self.run_id}: no file {path!r} (has: {', '.join(f.path for f in self.files)})"
        )

    def to_json(self) -> bytes:
        return (json.dumps(to_mapping(self), indent=2, sort_keys=True) + "\n").encode("utf-8")


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Parse and validate manifest bytes; `where` names the object in error messages."""
    try:
        tree = json.loads(data.decode("utf-8"))
        manifest = from_mapping(Manifest, tree, "")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{where}: not valid JSON: {exc}") from None
    except ConfigError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    if manifest.format != MANIFEST_FORMAT:
        raise ArtifactError(f"{where}: format {manifest.format} is not supported "
                            f"(expected {MANIFEST_FORMAT})")
    for entry in manifest.files:
        check_relative_path(entry.path, where)
    return manifest


def check_relative_path(path: str, where: str) -> None:
    """A run-relative POSIX path: no absolute paths, no '..', not the manifest's own name."""
    pure = PurePosixPath(path)
    if (not path or pure.is_absolute() or any(p in ("", ".", "..") for p in path.split("/"))
            or "\\" in path):
        raise ArtifactError(f"{where}: invalid file path {path!r} "
                            "(expected a relative path without '..')")
    if path == MANIFEST_NAME:
        raise ArtifactError(f"{where}: a run file may not be named {MANIFEST_NAME!r} (reserved)")


def describe_file(rel_path: str, path: Path) -> FileEntry:
    return FileEntry(path=rel_path, sha256=sha256_file(path), size=path.stat().st_size)


__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "FileEntry",
    "Manifest",
    "Provenance",
    "check_relative_path",
    "describe_file",
    "parse_manifest",
    "sha256_file",
]
