"""Streaming, sharded, resumable preparation: the building blocks every prepare stage shares.

A prepare stage at real size (ImageNet, 960 h of LibriSpeech) cannot hold a split in memory. These
pieces let it decode items in worker processes, in a fixed order, and write fixed-size shards as it
goes, so peak memory is one shard per split plus the workers' items in flight:

- `resumable_dir(out_dir, fingerprint)`: a staging directory *beside* the output whose name carries
  the fingerprint of what is being prepared (params + seed). A killed stage leaves it behind; the next
  run with the same fingerprint continues in it, a run with another fingerprint starts fresh. DVC
  deletes a stage's outputs before running it, so the staging directory is not an output.
- `ShardWriter`: appends items of one split and writes `<split>-<k>.npy` every `max_items` items (or
  before `max_length` samples along axis 0 would be exceeded), each shard atomically, then one
  journal line (the shard's manifest rows, the caller's running statistics, the index of the next
  source item). A new writer reads the journal back: the shards it names are trusted, anything after
  the last journal line is written again. A split's source items must come in a fixed order.
- `parallel_map`: an ordered map over worker processes (spawned: torch and libgomp do not survive a
  fork), at most two chunks per worker in flight; `workers <= 1` maps in this process, which is what
  the embedded default uses. `worker_pool` shares one pool between the splits of a stage.
- `ChannelMoments`: per-channel mean and std from exact integer sums of uint8 pixels, so the result
  does not depend on shard boundaries, worker count or summation order.
- `SkipLog`: items a stage skipped (a corrupt JPEG, an unreadable file), with the reason; the stage
  fails only above `max_fraction`, naming the first ones.
- `RateProgress`: items done, rate and ETA on every long step (a bar on a terminal, lines otherwise).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from d2v.atomic import TMP_MARKER, replace_dir
from d2v.cpu_limit import usable_cores
from d2v.data.io import write_npy
from d2v.errors import D2VError
from d2v.progress import Progress

JOURNAL = "journal.jsonl"
FINGERPRINT_FILE = "fingerprint.txt"
In = TypeVar("In")
Out = TypeVar("Out")


# ------------------------------------------------------------------------------------------ staging


def fingerprint(*parts: Any) -> str:
    """A short stable hash of what a stage prepares (config dataclasses, seed, source digests)."""
    text = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def staging_path(out_dir: str | Path, stage_print: str) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial-{stage_print}")


@contextmanager
def resumable_dir(out_dir: str | Path, stage_print: str) -> Iterator[Path]:
    """Yield the staging directory for `out_dir` (kept across failures); it replaces `out_dir` when the
    block succeeds. Staging directories of other fingerprints are removed: they cannot be resumed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(out_dir, stage_print)
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        if stale != staging:
            shutil.rmtree(stale, ignore_errors=True)
    staging.mkdir(exist_ok=True)
    (staging / FINGERPRINT_FILE).write_text(stage_print + "\n", encoding="utf-8")
    yield staging
    (staging / FINGERPRINT_FILE).unlink()
    (staging / JOURNAL).unlink(missing_ok=True)
    for leftover in staging.glob(f"*{TMP_MARKER}*"):  # a temporary of a killed write, never committed
        leftover.unlink()
    replace_dir(staging, out_dir)


# ------------------------------------------------------------------------------------------- shards


@dataclass
class ResumeState:
    """What the journal says one split already holds."""

    rows: list[list[Any]] = field(default_factory=list)  # manifest rows of the complete shards
    shards: int = 0  # complete shards
    next_index: int = 0  # source items below this index are accounted for (written or skipped)
    stats: dict[str, Any] = field(default_factory=dict)  # the caller's running statistics then


class ShardWriter:
    """Items of one split -> `<split>-<k>.npy` shards written as they fill, with a journal line each.

    The caller walks the split's source items in a fixed order, numbered from 0, and starts at
    `writer.next_index` (0, or where the journal left off). `add(array, row, index, stats)`: `row` is
    the item's manifest row without its shard columns; the writer appends the shard's file name and
    the item's position in it (its row, or its sample offset when `concatenate`). `stats` is any
    JSON-able running state the caller keeps (moments, skips) and wants back on resume: pass it to
    every `add` and to the final `flush`, it is journalled with each shard.
    """

    def __init__(
        self,
        staging: Path,
        split: str,
        *,
        max_items: int = 0,
        max_length: int = 0,
        concatenate: bool = False,
        resume: bool = True,
    ) -> None:
        if max_items <= 0 and max_length <= 0:
            raise D2VError(f"{split}: a shard needs a positive size (max_items or max_length)")
        self.staging, self.split = staging, split
        self.max_items, self.max_length, self.concatenate = max_items, max_length, concatenate
        state = read_journal(staging, split) if resume else ResumeState()
        self.resumed = state
        self.rows: list[list[Any]] = list(state.rows)
        self.shard_index = state.shards
        self.next_index = state.next_index
        self._buffer: list[np.ndarray] = []
        self._pending: list[list[Any]] = []
        self._length = 0

    @property
    def shard_name(self) -> str:
        return f"{self.split}-{self.shard_index:04d}.npy"

    def add(self, array: np.ndarray, row: Sequence[Any], index: int, stats: dict[str, Any] | None = None) -> None:
        if index < self.next_index:
            return  # already in a complete shard (a resumed run replays from the split's start)
        length = len(array)
        if self._buffer and self.max_length and self._length + length > self.max_length:
            self.flush(stats, next_index=index)
        position = self._length if self.concatenate else len(self._buffer)
        self._buffer.append(array)
        self._pending.append([*row, self.shard_name, position])
        self._length += length
        if self.max_items and len(self._buffer) >= self.max_items:
            self.flush(stats, next_index=index + 1)

    def flush(self, stats: dict[str, Any] | None = None, *, next_index: int) -> None:
        """Write the buffered items as one shard, then the journal line that makes it count.
        `next_index`: the first source item not in this or an earlier shard (nor skipped)."""
        if not self._buffer:
            return
        data = np.concatenate(self._buffer) if self.concatenate else np.stack(self._buffer)
        write_npy(self.staging / self.shard_name, data)
        self.rows += self._pending
        line = {"split": self.split, "shard": self.shard_index, "rows": self._pending,
                "next_index": next_index, "stats": stats or {}}  # fmt: skip
        with open(self.staging / JOURNAL, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        self._buffer, self._pending, self._length = [], [], 0
        self.shard_index += 1
        self.next_index = next_index


def read_journal(staging: Path, split: str) -> ResumeState:
    """The complete shards of `split` recorded in the journal (a torn last line is ignored)."""
    state = ResumeState()
    path = staging / JOURNAL
    if not path.is_file():
        return state
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            break  # the line a kill cut short: its shard is written again
        if line["split"] != split:
            continue
        if line["shard"] != state.shards or not (staging / f"{split}-{line['shard']:04d}.npy").is_file():
            break
        state.rows += line["rows"]
        state.shards += 1
        state.next_index = line["next_index"]
        state.stats = line["stats"]
    return state


# ------------------------------------------------------------------------------------------ workers


@contextmanager
def worker_pool(workers: int) -> Iterator[Any]:
    """A pool of `workers` spawned processes to share between `parallel_map` calls (None when <= 1):
    a stage that maps split after split starts its workers once (each spawn re-imports the modules)."""
    if workers <= 1:
        yield None
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread_per_worker) as pool:
        yield pool


def _one_thread_per_worker() -> None:
    """Workers are the parallelism: a worker's torch (resampling) or numpy using every core as well
    would oversubscribe the machine. Runs before the first task imports either."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"


def parallel_map(fn: Callable[[In], Out], items: Iterable[In], pool: Any, chunksize: int = 16) -> Iterator[Out]:
    """`map(fn, items)` in order, over `pool` (from `worker_pool`), or in this process when it is None.

    `fn` must be a module-level function (it is pickled to the workers). At most two chunks per
    worker are in flight: `Pool.imap` would read the whole input and pile up results whenever the
    caller (writing shards) is slower than the workers, so memory would grow with the dataset."""
    if pool is None:
        yield from map(fn, items)
        return
    window: deque = deque()
    source = iter(items)
    while True:
        while len(window) < 2 * pool._processes and (chunk := list(itertools.islice(source, chunksize))):
            window.append(pool.map_async(fn, chunk))
        if not window:
            return
        yield from window.popleft().get()


def default_workers() -> int:
    """One decode worker per core the process may use."""
    return usable_cores()


# ---------------------------------------------------------------------------------------- statistics


class ChannelMoments:
    """Mean and std per channel of uint8 images on the 0-1 scale, from exact integer sums."""

    def __init__(self, channels: int, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.count = int(state.get("count", 0))  # pixels per channel
        self.sums = [int(v) for v in state.get("sums", [0] * channels)]
        self.squares = [int(v) for v in state.get("squares", [0] * channels)]

    def add(self, image: np.ndarray) -> None:
        """`image`: uint8 (H, W, C)."""
        pixels = image.reshape(-1, image.shape[-1]).astype(np.int64)  # (H*W, C)
        self.count += pixels.shape[0]
        self.sums = [s + int(v) for s, v in zip(self.sums, pixels.sum(axis=0))]
        self.squares = [s + int(v) for s, v in zip(self.squares, (pixels * pixels).sum(axis=0))]

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "sums": self.sums, "squares": self.squares}

    def mean_std(self) -> tuple[list[float], list[float]]:
        if not self.count:
            raise D2VError("no pixels to compute the normalisation statistics from (empty train split)")
        mean = [s / self.count / 255.0 for s in self.sums]
        var = [q / self.count / 255.0**2 - m * m for q, m in zip(self.squares, mean)]
        return [round(m, 6) for m in mean], [round(max(v, 0.0) ** 0.5, 6) for v in var]


# -------------------------------------------------------------------------------------------- skips


class SkipLog:
    """Items skipped with their reason; `check` fails the stage when too many were."""

    def __init__(self, what: str, max_fraction: float, state: dict[str, Any] | None = None) -> None:
        self.what, self.max_fraction = what, max_fraction
        state = state or {}
        self.seen = int(state.get("seen", 0))
        self.skipped: list[dict[str, str]] = list(state.get("skipped", []))

    def ok(self) -> None:
        self.seen += 1

    def skip(self, item: str, reason: str) -> None:
        self.seen += 1
        self.skipped.append({"item": item, "reason": reason})

    def state(self) -> dict[str, Any]:
        return {"seen": self.seen, "skipped": self.skipped}

    def check(self) -> None:
        if self.seen and len(self.skipped) > self.max_fraction * self.seen:
            first = "; ".join(f"{s['item']}: {s['reason']}" for s in self.skipped[:3])
            raise D2VError(f"{self.what}: {len(self.skipped)} of {self.seen} items unreadable, above the "
                           f"allowed fraction {self.max_fraction} (first: {first})")  # fmt: skip


# ----------------------------------------------------------------------------------------- progress


class RateProgress:
    """Counted work with rate and ETA: a tqdm bar on a terminal, else a line every `every` items."""

    def __init__(self, label: str, total: int, unit: str = "items", every: int = 0, initial: int = 0) -> None:
        self.every = every or max(1, total // 10)
        self.unit = unit
        self.initial = initial
        self.progress = Progress(label, total, initial=initial, unit=unit)

    def update(self, done: int) -> None:
        self.progress.advance(done - self.progress.done)
        if self.progress.bar is None and (done % self.every == 0 or done == self.progress.total):
            elapsed = max(self.progress.elapsed, 1e-9)
            rate = (done - self.initial) / elapsed
            left = (self.progress.total - done) / rate if rate > 0 else float("inf")
            eta = f"{left:.0f} s" if left != float("inf") else "?"
            self.progress.message(f"{done}/{self.progress.total} {self.unit} ({rate:.1f} {self.unit}/s, ETA {eta})")

    def close(self) -> None:
        self.progress.close()
