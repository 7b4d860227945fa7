"""Rank 0 mirrors each saved checkpoint to the checkpoint store, in a background thread.

Why a thread, not an upload inside the save: every rank waits at the barrier after a save, so a
synchronous upload of a multi-GB checkpoint (weights + AdamW moments) would idle all GPUs for as long
as the network takes (tens of seconds on S3, minutes on a slow link), at every checkpoint. The thread
mostly waits on the network (boto3 and hashlib release the GIL), so training goes on meanwhile.

What makes that safe:
- A snapshot: `submit` hard-links the just-saved files into a staging directory beside the checkpoint
  before returning. Saves never modify a file in place (new files, then renames), so the links keep
  exactly this step's bytes while later saves replace or delete the originals; the cost is disk
  blocks the original files would have freed (at most two checkpoints: one uploading, one waiting).
- Only the newest waits: a checkpoint submitted while another waits replaces it (its upload would
  be out of date before it started); the one in flight finishes.
- `close` (the end of `pretrain`: success, SIGTERM or error) waits for the last upload, so a finished
  run's final model, and a preempted run's last checkpoint, are on the store before the process exits.
- A failed upload (store down after botocore's retries, access denied, ...) is a warning naming the
  store and the error; training continues, and the local checkpoint is intact.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from d2v.atomic import TMP_MARKER
from d2v.train.checkpoint_store import CheckpointStore, log


@dataclass(frozen=True)
class _Snapshot:
    directory: Path  # the staging directory, removed after the upload
    checkpoint: Path
    weights: Path
    step: int
    final: bool


class CheckpointMirror:
    """Uploads checkpoints of one run to `store`, newest first, one at a time, off the main thread."""

    def __init__(self, store: CheckpointStore, checkpoint: Path, keep_last: int) -> None:
        self.store = store
        self.checkpoint = checkpoint
        self.keep_last = keep_last
        self._pending: _Snapshot | None = None
        self._busy: _Snapshot | None = None
        self._closing = False
        self._final_failed: _Snapshot | None = None
        self._cond = threading.Condition()
        remove_stale_staging(checkpoint)  # what a killed process left
        self._thread = threading.Thread(target=self._run, name="d2v-checkpoint-mirror", daemon=True)
        self._thread.start()

    def submit(self, weights: Path, step: int, final: bool) -> None:
        """Queue the checkpoint just saved at `self.checkpoint` (weights: its weights file)."""
        snapshot = _snapshot(self.checkpoint, weights, step, final)
        with self._cond:
            replaced, self._pending = self._pending, snapshot
            self._cond.notify_all()
        if replaced is not None:
            shutil.rmtree(replaced.directory, ignore_errors=True)
            log(f"checkpoint step {replaced.step} not mirrored: step {step} replaced it before its upload "
                "started (uploads are slower than checkpoint_every)")

    def close(self) -> None:
        """Wait for the uploads queued so far, then stop the thread."""
        with self._cond:
            waiting = self._pending or self._busy  # the newest of those queued
            self._closing = True
            self._cond.notify_all()
        if waiting is not None:
            log(f"waiting for the upload of checkpoint step {waiting.step} to {self.store.url()}")
        self._thread.join()
        if self._final_failed is not None:
            log(f"warning: the final model (step {self._final_failed.step}) is not on {self.store.url()}; "
                f"it is only at {self.checkpoint}")

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                self._busy, self._pending = self._pending, None
            try:
                self._upload(self._busy)
            finally:
                shutil.rmtree(self._busy.directory, ignore_errors=True)
                with self._cond:
                    self._busy = None

    def _upload(self, snapshot: _Snapshot) -> None:
        started = time.perf_counter()
        try:
            stored = self.store.upload(snapshot.checkpoint, snapshot.weights, step=snapshot.step,
                                       final=snapshot.final, keep_last=self.keep_last)
        except Exception as exc:  # noqa: BLE001 - the store must never stop training
            if snapshot.final:
                self._final_failed = snapshot
            log(f"warning: checkpoint step {snapshot.step} not mirrored to {self.store.url()}: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())}; training continues, the local "
                f"checkpoint {self.checkpoint} is intact")
            return
        if stored is None:
            log(f"checkpoint step {snapshot.step} not mirrored: {self.store.url()} already holds a later "
                "step of this run")
            return
        mib = (stored.checkpoint.size + stored.weights.size) / 2**20
        what = "final model" if snapshot.final else "checkpoint"
        log(f"{what} step {snapshot.step} mirrored to {self.store.url(f'step{snapshot.step:08d}')} in "
            f"{time.perf_counter() - started:.1f} s ({mib:.1f} MiB)")


def _staging_prefix(checkpoint: Path) -> str:
    return f".{checkpoint.stem}-mirror{TMP_MARKER}"


def _snapshot(checkpoint: Path, weights: Path, step: int, final: bool) -> _Snapshot:
    directory = checkpoint.with_name(f"{_staging_prefix(checkpoint)}{step:08d}-{uuid.uuid4().hex[:8]}")
    directory.mkdir()
    try:
        for source in (checkpoint, weights):
            try:
                os.link(source, directory / source.name)
            except OSError:  # a file system without hard links: a copy costs time, not correctness
                shutil.copy2(source, directory / source.name)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return _Snapshot(directory, directory / checkpoint.name, directory / weights.name, step, final)


def remove_stale_staging(checkpoint: Path) -> None:
    """Staging directories of `checkpoint` a killed process left (rank 0 only mirrors)."""
    if not checkpoint.parent.is_dir():
        return
    prefix = _staging_prefix(checkpoint)
    for candidate in checkpoint.parent.iterdir():
        if candidate.name.startswith(prefix) and candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)


__all__ = ["CheckpointMirror", "remove_stale_staging"]
