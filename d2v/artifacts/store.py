"""The artifact store: immutable runs with manifests, and per-modality pointers.

Layout (identical on every backend):

    runs/<run_id>/<files...>            the run's files, uploaded first
    runs/<run_id>/manifest.json         written last: its presence is what makes the run complete
    pointers/<modality>/latest.json     the last run published for a modality
    pointers/<modality>/champion.json   the promoted run, with the metric that justified it

Readers only ever see complete runs. A publish that dies half-way leaves files without a manifest;
they stay invisible, and the run id stays taken (ids are never reused, so a retry gets a new id).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from d2v import MODALITIES
from d2v.artifacts.backend import open_backend
from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ChecksumMismatchError,
    ConditionFailedError,
    PointerConflictError,
    RunExistsError,
)
from d2v.artifacts.interface import Backend, NoProgress, TransferProgress
from d2v.artifacts.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    Manifest,
    Provenance,
    check_relative_path,
    describe_file,
    parse_manifest,
    sha256_file,
)
from d2v.artifacts.provenance import collect_provenance
from d2v.atomic import atomic_path, is_temporary
from d2v.config import from_mapping, to_mapping
from d2v.errors import ConfigError

# `promote(replacing=...)` left out: no assumption about the current champion, only the write is
# compare-and-swap. A sentinel, since None means "there was no champion".
ANY_CHAMPION: Any = object()
LATEST_ATTEMPTS = 5  # concurrent publishers of one modality: each re-reads `latest` and tries again
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PointerKind = Literal["latest", "champion"]
POINTER_KINDS: tuple[PointerKind, ...] = ("latest", "champion")


@dataclass(frozen=True)
class Metric:
    name: str
    value: float


@dataclass(frozen=True)
class Pointer:
    kind: PointerKind
    modality: str
    run_id: str
    updated_at: str
    metric: Metric | None = None


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    n_files: int
    size: int  # bytes, manifest excluded


class ArtifactStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def from_config(cls, cfg: ArtifactsConfig) -> ArtifactStore:
        return cls(open_backend(cfg))

    # ---------------------------------------------------------------------------------- publish

    def publish(
        self,
        files: Mapping[str, Path],
        *,
        run_id: str | None = None,
        modality: str | None = None,
        params: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        provenance: Provenance | None = None,
        progress: TransferProgress | None = None,
    ) -> Manifest:
        """Upload `files` (run-relative path -> local file) as a new, immutable run.

        Order matters: refuse an existing id, upload every file, then write the manifest (create-
        if-absent, so two concurrent publishers of one id cannot both win), then move `latest`.
        """
        run_id = new_run_id() if run_id is None else check_run_id(run_id)
        if modality is not None:
            check_modality(modality)
        if not files:
            raise ArtifactError(f"run {run_id}: nothing to publish (no files given)")
        progress = progress or NoProgress()
        entries = []
        for rel, path in sorted(files.items()):
            check_relative_path(rel, f"run {run_id}")
            if not Path(path).is_file():
                raise ArtifactError(f"{path}: not a file (cannot publish it as {rel!r})")
            entries.append(describe_file(rel, Path(path)))
        self._refuse_existing(run_id)
        for entry in entries:
            cb = progress.file_started("upload", entry.path, entry.size)
            self.backend.put_file(run_key(run_id, entry.path), Path(files[entry.path]), cb,
                                  sha256=entry.sha256)
            progress.file_done("upload", entry.path, entry.size)
        manifest = Manifest(
            format=MANIFEST_FORMAT,
            run_id=run_id,
            created_at=utc_now(),
            modality=modality,
            files=tuple(entries),
            provenance=provenance or collect_provenance(params or {}),
            extra=dict(extra or {}),
        )
        manifest_bytes = manifest.to_json()
        try:
            self.backend.put_bytes(run_key(run_id, MANIFEST_NAME), manifest_bytes, overwrite=False)
        except RunExistsError:
            # A retry whose first try landed (its answer lost) finds its own manifest: published.
            stored = self.backend.get_bytes_tagged(run_key(run_id, MANIFEST_NAME))
            if stored is None or stored[0] != manifest_bytes:
                raise RunExistsError(f"run {run_id}: published concurrently by someone else") from None
        if modality is not None:
            self._write_pointer(Pointer("latest", modality, run_id, manifest.created_at))
        return manifest

    def _refuse_existing(self, run_id: str) -> None:
        if self.backend.exists(run_key(run_id, MANIFEST_NAME)):
            raise RunExistsError(f"run {run_id} already exists in {self.backend.uri}; "
                                 "runs are immutable (publish under a new run id)")
        if next(iter(self.backend.list(run_key(run_id, ""))), None) is not None:
            raise RunExistsError(f"run {run_id} has objects in {self.backend.uri} from an "
                                 "incomplete publish; run ids are never reused (choose another)")

    # ------------------------------------------------------------------------------------ read

    def list_runs(self) -> list[RunSummary]:
        """Complete runs (those with a manifest), oldest id first."""
        sizes: dict[str, list[int]] = {}
        complete: set[str] = set()
        for info in self.backend.list("runs/"):
            parts = info.key.split("/", 2)
            if len(parts) < 3:
                continue
            run_id, rel = parts[1], parts[2]
            if rel == MANIFEST_NAME:
                complete.add(run_id)
            else:
                sizes.setdefault(run_id, []).append(info.size)
        return [RunSummary(r, len(sizes.get(r, [])), sum(sizes.get(r, []))) for r in sorted(complete)]

    def manifest(self, run_id: str) -> Manifest:
        key = run_key(check_run_id(run_id), MANIFEST_NAME)
        try:
            data = self.backend.get_bytes(key)
        except ArtifactNotFoundError:
            raise ArtifactNotFoundError(
                f"run {run_id}: not found in {self.backend.uri} (no manifest: missing or incomplete)"
            ) from None
        manifest = parse_manifest(data, f"{self.backend.uri}/{key}")
        if manifest.run_id != run_id:
            raise ArtifactError(f"{self.backend.uri}/{key}: run_id is {manifest.run_id!r}")
        return manifest

    def resolve(self, ref: str) -> str:
        """A run id, or `latest:<modality>` / `champion:<modality>` -> run id."""
        kind, sep, modality = ref.partition(":")
        if not sep:
            return check_run_id(ref)
        if kind not in POINTER_KINDS:
            raise ArtifactError(f"{ref!r}: expected a run id, latest:<modality> or champion:<modality>")
        pointer = self.pointer(modality, kind)  # type: ignore[arg-type]
        if pointer is None:
            raise ArtifactNotFoundError(f"{ref}: no {kind} run for {modality} in {self.backend.uri}")
        return pointer.run_id

    def download(
        self,
        run_id: str,
        dest: Path,
        *,
        path: str | None = None,
        progress: TransferProgress | None = None,
    ) -> list[Path]:
        """Copy a complete run (or one of its files) under `dest`, verifying every sha256."""
        manifest = self.manifest(run_id)
        entries = manifest.files if path is None else (manifest.entry(path),)
        progress = progress or NoProgress()
        written = []
        for entry in entries:
            target = dest.joinpath(*entry.path.split("/"))
            with atomic_path(target) as tmp:  # a corrupt object never replaces the file
                cb = progress.file_started("download", entry.path, entry.size)
                self.backend.get_file(run_key(run_id, entry.path), tmp, cb)
                actual = sha256_file(tmp)
                if actual != entry.sha256:
                    raise ChecksumMismatchError(
                        f"run {run_id}: {entry.path}: sha256 {actual} does not match the manifest "
                        f"({entry.sha256}); the stored object is corrupt or was modified"
                    )
            progress.file_done("download", entry.path, entry.size)
            written.append(target)
        return written

    # -------------------------------------------------------------------------------- pointers

    def promote(self, run_id: str, modality: str, metric: Metric, *, replacing: str | None | Any = ANY_CHAMPION) -> Pointer:
        """Make a complete run the champion for `modality`, recording the justifying metric.

        `replacing`: the champion run the decision was made against (None: there was none). If the
        champion is another run by now, or moves between this read and the write (compare-and-swap
        on the pointer), PointerConflictError names both and nothing changes: of two racing
        promotions exactly one wins. The default checks only the write itself.
        """
        check_modality(modality)
        self.manifest(run_id)  # only complete runs can be promoted
        pointer = Pointer("champion", modality, run_id, utc_now(), metric)
        self._move_pointer(pointer, replacing)
        return pointer

    def pointer(self, modality: str, kind: PointerKind) -> Pointer | None:
        check_modality(modality)
        key = pointer_key(modality, kind)
        try:
            data = self.backend.get_bytes(key)
        except ArtifactNotFoundError:
            return None
        return self._parse_pointer(data, key)

    def pointers(self) -> list[Pointer]:
        found = (self.pointer(m, k) for m in MODALITIES for k in POINTER_KINDS)
        return [p for p in found if p is not None]

    def _write_pointer(self, pointer: Pointer) -> None:
        """`latest` is the last run published: on a lost race, re-read and move it again."""
        for attempt in range(LATEST_ATTEMPTS):
            try:
                self._move_pointer(pointer, ANY_CHAMPION)
                return
            except PointerConflictError:
                if attempt == LATEST_ATTEMPTS - 1:
                    raise

    def _move_pointer(self, pointer: Pointer, replacing: str | None | Any) -> None:
        key = pointer_key(pointer.modality, pointer.kind)
        name = f"{pointer.kind}:{pointer.modality}"
        current = self.backend.get_bytes_tagged(key)
        current_run = None if current is None else self._parse_pointer(current[0], key).run_id
        if replacing is not ANY_CHAMPION and current_run != replacing:
            raise PointerConflictError(
                f"{name} is {current_run or 'unset'}, not {replacing or 'unset'} as the promotion of "
                f"{pointer.run_id} assumed: another writer moved it; compare against {current_run} again"
            )
        data = (json.dumps(to_mapping(pointer), indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            self.backend.put_bytes_if(key, data, expected_tag=None if current is None else current[1])
        except ConditionFailedError:
            stored = self.backend.get_bytes_tagged(key)
            if stored is not None and stored[0] == data:
                return  # our own write landed on an earlier try; only its answer was lost
            now = self.pointer(pointer.modality, pointer.kind)
            raise PointerConflictError(
                f"{name} moved to {now.run_id if now else 'unset'} while {pointer.run_id} was being "
                f"written (it was {current_run or 'unset'}): another writer won; nothing was changed"
            ) from None

    def _parse_pointer(self, data: bytes, key: str) -> Pointer:
        try:
            return from_mapping(Pointer, json.loads(data.decode("utf-8")), "")
        except (UnicodeDecodeError, json.JSONDecodeError, ConfigError) as exc:
            raise ArtifactError(f"{self.backend.uri}/{key}: invalid pointer: {exc}") from None


# ---------------------------------------------------------------------------------------- helpers


def collect_files(paths: Sequence[Path]) -> dict[str, Path]:
    """Run-relative names for local paths.

    One directory: its files at the run root. Otherwise each file under its own name and each
    directory's files under the directory's name.
    """
    if len(paths) == 1 and paths[0].is_dir():
        return _walk(paths[0], "")
    files: dict[str, Path] = {}
    for path in paths:
        if not path.exists():
            raise ArtifactError(f"{path}: no such file or directory")
        found = _walk(path, path.name + "/") if path.is_dir() else {path.name: path}
        for rel, local in found.items():
            if rel in files:
                raise ArtifactError(f"{local}: name {rel!r} given twice ({files[rel]})")
            files[rel] = local
    return files


def _walk(directory: Path, prefix: str) -> dict[str, Path]:
    # A temporary file is a write that never finished (a killed process): not part of any output.
    return {prefix + p.relative_to(directory).as_posix(): p
            for p in sorted(directory.rglob("*")) if p.is_file() and not is_temporary(p.name)}


def new_run_id() -> str:
    """Sortable by time, unique enough for concurrent publishers: 20261124T153012Z-3fa9c1."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ArtifactError(f"run id {run_id!r}: expected letters, digits, '.', '_' or '-' "
                            "(at most 128, not starting with a symbol)")
    return run_id


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ArtifactError(f"modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    return modality


def run_key(run_id: str, rel: str) -> str:
    return f"runs/{run_id}/{rel}"


def pointer_key(modality: str, kind: str) -> str:
    return f"pointers/{modality}/{kind}.json"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


__all__ = [
    "ArtifactStore",
    "Metric",
    "POINTER_KINDS",
    "Pointer",
    "RunSummary",
    "check_run_id",
    "collect_files",
    "new_run_id",
    "pointer_key",
    "run_key",
]
