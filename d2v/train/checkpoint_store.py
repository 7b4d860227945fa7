"""Training checkpoints on a store (S3 or a directory), so a pod's disk is not the only copy.

`pretrain.checkpoint_store` names the store: `s3://bucket/prefix`, `file://dir`, or `artifacts` (the
artifact store); endpoint, credentials, timeouts and retries are the `artifacts` section's. Layout,
below the store's URI, for the run whose identity (d2v/train/run_identity.py) starts with <run>:

    checkpoints/<modality>/<run>/step<N:08d>/checkpoint.<sha256[:16]>.pt   the torch file of step N
    checkpoints/<modality>/<run>/step<N:08d>/<stem>.<sha256[:16]>.safetensors   its weights
    checkpoints/<modality>/<run>/step<N:08d>/manifest.json   both files: key, local name, size, sha256
    checkpoints/<modality>/<run>/latest.json                 the newest step's manifest

An upload sends the two files, then the step's manifest, then `latest.json`: a reader never finds a
`latest.json` whose files are not complete (an S3 object, and a file:// object, appears only whole),
and every file is checked against its sha256 on download. Files are named by content, so a step
uploaded twice (a run that lost its disk and redid it) never meets an object of other bytes.

The run id is in the prefix, so a run with other params, data or code never sees this run's
checkpoints. Within one run `latest.json` only moves forward: a process that started without the
store's newest checkpoint (the store was down at resume) does not replace it with an older step.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from d2v.artifacts.backend import open_backend
from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import ArtifactError, ArtifactNotFoundError
from d2v.artifacts.interface import Backend
from d2v.atomic import TMP_MARKER, durable_replace
from d2v.data.io import sha256_file
from d2v.errors import D2VError
from d2v.train.checkpoint import CheckpointError
from d2v.train.config import ARTIFACT_STORE, validate_checkpoint_store

SETTING = "pretrain.checkpoint_store"
MANIFEST_FORMAT = 1
LATEST = "latest.json"
STEP_MANIFEST = "manifest.json"
RUN_KEY_CHARS = 16  # of the run identity's 64 hex digits; the manifest records all of them
_STEP_DIR = re.compile(r"step(\d{8})/")
# A weights file name as save_checkpoint writes it: it becomes a local file name, so nothing else.
_WEIGHTS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.[0-9a-f]{16}\.safetensors")


def resolve_checkpoint_store(setting: str | None, artifacts: ArtifactsConfig) -> ArtifactsConfig | None:
    """The store `pretrain.checkpoint_store` names, with the artifact store's transfer settings;
    None: checkpoints stay local."""
    validate_checkpoint_store(setting, SETTING)
    if setting is None:
        return None
    return artifacts if setting == ARTIFACT_STORE else replace(artifacts, uri=setting)


def log(text: str) -> None:
    """Progress and warnings of the mirror: stderr, like the loop's other `[pretrain]` lines."""
    print(f"[pretrain] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StoredFile:
    key: str  # relative to the run's prefix
    name: str  # the file's name beside the local checkpoint
    size: int
    sha256: str


@dataclass(frozen=True)
class StoredCheckpoint:
    """One step's manifest (and `latest.json`, the newest one's copy)."""

    run: str  # the full run identity
    modality: str
    step: int
    final: bool  # the last save of the run: its final model
    checkpoint: StoredFile
    weights: StoredFile
    format: int = MANIFEST_FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> "StoredCheckpoint":
        try:
            tree = json.loads(data)
            if tree.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {tree.get('format')!r}, expected {MANIFEST_FORMAT}")
            stored = cls(**{**tree, "checkpoint": StoredFile(**tree["checkpoint"]),
                            "weights": StoredFile(**tree["weights"])})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{where}: not a checkpoint manifest ({type(exc).__name__}: {exc}); "
                                  "delete it, or set pretrain.checkpoint_store: null") from None
        if not _WEIGHTS_NAME.fullmatch(stored.weights.name):
            raise CheckpointError(f"{where}: weights name {stored.weights.name!r} is not a checkpoint's")
        return stored


class CheckpointStore:
    """The checkpoints of one run (modality + run identity) on one store."""

    def __init__(self, backend: Backend, modality: str, run_id: str) -> None:
        self.backend = backend
        self.modality = modality
        self.run_id = run_id
        self.prefix = f"checkpoints/{modality}/{run_id[:RUN_KEY_CHARS]}"

    @classmethod
    def open(cls, cfg: ArtifactsConfig, modality: str, run_id: str | None) -> "CheckpointStore":
        if run_id is None:  # the prefix is the run identity: without one, runs would mix
            raise D2VError(f"{SETTING}: {cfg.uri}: a checkpoint store needs the run identity "
                           "(d2v/train/run_identity.py); none was given")
        return cls(open_backend(cfg), modality, run_id)

    def url(self, key: str = "") -> str:
        """Where `key` (relative to this run) is, for messages: s3://bucket/prefix/checkpoints/..."""
        return f"{self.backend.uri.rstrip('/')}/{self.prefix}" + (f"/{key}" if key else "")

    def latest(self) -> StoredCheckpoint | None:
        """The newest checkpoint of this run on the store; None if it has none."""
        tagged = self.backend.get_bytes_tagged(f"{self.prefix}/{LATEST}")
        if tagged is None:
            return None
        stored = StoredCheckpoint.from_json(tagged[0], self.url(LATEST))
        if stored.run != self.run_id:  # the first 16 hex digits agree, the rest not: never seen
            raise CheckpointError(f"{self.url(LATEST)}: written by run {stored.run}, not {self.run_id}")
        return stored

    def upload(self, checkpoint: Path, weights: Path, *, step: int, final: bool,
               keep_last: int) -> StoredCheckpoint | None:
        """Send step `step` (its torch file and weights, under their local names), then its manifest,
        then `latest.json`; keep the newest `keep_last` steps. None, sending nothing, when the store
        already holds a later step of this run."""
        current = self.latest()
        if current is not None and current.step > step:
            return None
        step_dir = f"step{step:08d}"
        weights_file = self._put(f"{step_dir}/{weights.name}", weights)  # already named by content
        digest = sha256_file(checkpoint)
        checkpoint_file = self._put(f"{step_dir}/{checkpoint.stem}.{digest[:16]}{checkpoint.suffix}",
                                    checkpoint, digest)
        stored = StoredCheckpoint(self.run_id, self.modality, step, final, checkpoint_file, weights_file)
        self.backend.put_bytes(f"{self.prefix}/{step_dir}/{STEP_MANIFEST}", stored.to_json())
        self.backend.put_bytes(f"{self.prefix}/{LATEST}", stored.to_json())  # the commit
        try:
            self._prune(keep_last)
        except (ArtifactError, OSError) as exc:  # e.g. a role without DeleteObject: costs space only
            log(f"warning: cannot remove old steps under {self.url()}/: {_one_line(exc)}")
        return stored

    def _put(self, key: str, path: Path, digest: str | None = None) -> StoredFile:
        digest = digest or sha256_file(path)
        self.backend.put_file(f"{self.prefix}/{key}", path, sha256=digest)
        return StoredFile(key, path.name, path.stat().st_size, digest)

    def _prune(self, keep_last: int) -> None:
        """Delete every step directory but the newest `keep_last`."""
        by_step: dict[int, list[str]] = {}
        root = f"{self.prefix}/"
        for info in self.backend.list(root):
            match = _STEP_DIR.match(info.key[len(root):])
            if match:
                by_step.setdefault(int(match.group(1)), []).append(info.key)
        for step in sorted(by_step)[:-keep_last]:
            for key in by_step[step]:
                self.backend.delete(key)

    def download(self, stored: StoredCheckpoint, path: Path) -> None:
        """Make `stored` the checkpoint at `path`: both files to temporary names beside it, each
        checked against its sha256, then weights under their own name and the torch file over `path`
        last (the commit, as save_checkpoint does). A mismatch raises CheckpointError naming the
        object and both hashes, and leaves the local files as they were."""
        path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        # Temporary names remove_stale_temporaries knows, should this process be killed mid-way.
        weights_tmp = path.with_name(f".{path.stem}{TMP_MARKER}{token}.safetensors")
        checkpoint_tmp = path.with_name(f".{path.name}{TMP_MARKER}{token}")
        try:
            for item, tmp in ((stored.weights, weights_tmp), (stored.checkpoint, checkpoint_tmp)):
                self.backend.get_file(f"{self.prefix}/{item.key}", tmp)
                found = sha256_file(tmp)
                if found != item.sha256:
                    raise CheckpointError(
                        f"{self.url(item.key)}: sha256 {found} does not match {item.sha256} recorded in "
                        f"{self.url(LATEST)}: the stored checkpoint is corrupt. Delete {self.url()}/ to "
                        f"resume from the local checkpoint (or step 0), or set {SETTING}: null"
                    )
            durable_replace(weights_tmp, path.with_name(stored.weights.name))
            durable_replace(checkpoint_tmp, path)
        finally:
            weights_tmp.unlink(missing_ok=True)
            checkpoint_tmp.unlink(missing_ok=True)


def local_step(path: Path, run_id: str) -> int:
    """The step of this run's checkpoint at `path`; -1 when there is none, it is another run's, or
    it cannot be read (the store's copy of this run is better than any of those)."""
    if not path.is_file():
        return -1
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - truncated or not a checkpoint: what the store replaces
        return -1
    if not isinstance(state, dict) or state.get("run") != run_id:
        return -1
    return int(state.get("step", -1))


def restore_newer(store: CheckpointStore, path: Path) -> StoredCheckpoint | None:
    """Before `--resume`: fetch the store's checkpoint of this run into `path` when the local one is
    missing, another run's or of fewer steps. A store that cannot be read is a warning (resume goes
    on from the local checkpoint, or step 0); a corrupt stored checkpoint is an error."""
    try:
        stored = store.latest()
    except (ArtifactError, OSError) as exc:  # down, access denied: training can do without it
        log(f"warning: cannot read {store.url(LATEST)}: {_one_line(exc)}; resuming from the local "
            f"checkpoint {path} if there is one")
        return None
    if stored is None:
        return None
    local = local_step(path, store.run_id)
    if local >= stored.step:
        log(f"local checkpoint {path} (step {local}) is not older than {store.url()} (step {stored.step}): "
            "the local one is used")
        return None
    started = time.perf_counter()
    try:
        store.download(stored, path)
    except ArtifactNotFoundError as exc:  # the manifest names it: someone deleted it, like corruption
        raise CheckpointError(f"{_one_line(exc)}: a file {store.url(LATEST)} names is missing; delete "
                              f"{store.url()}/ to resume without it, or set {SETTING}: null") from None
    except (ArtifactError, OSError) as exc:  # the store went away mid-download
        log(f"warning: cannot download step {stored.step} from {store.url()}: {_one_line(exc)}; resuming "
            f"from the local checkpoint {path} if there is one")
        return None
    mib = (stored.checkpoint.size + stored.weights.size) / 2**20
    why = "no checkpoint of this run here" if local < 0 else f"the local one is at step {local}"
    log(f"resuming from {store.url(f'step{stored.step:08d}')} step {stored.step} ({why}; "
        f"{mib:.1f} MiB in {time.perf_counter() - started:.1f} s)")
    return stored


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


__all__ = ["CheckpointStore", "StoredCheckpoint", "StoredFile", "local_step", "resolve_checkpoint_store",
           "restore_newer"]
