"""Atomic writes: a reader (or the next pipeline stage) sees the old file or the new one, never half.

Every write goes to a temporary name in the target's own directory (os.replace is atomic only within
one file system), is flushed and fsynced (so a crash right after the rename cannot leave a complete
name over incomplete data), then renamed over the target. A failure removes the temporary file and
leaves the target untouched.

    atomic_write_text(path, text)        atomic_write_bytes(path, data)        atomic_write_json(path, obj)
    with atomic_open(path, "wb") as f:   torch.save(payload, f)   # or np.save(f, array), csv.writer(f)
    with atomic_path(path) as tmp:       fill(tmp); check(tmp)    # writers that need a path
    with atomic_dir(directory) as staging: ...                    # a whole directory at once
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

# In every temporary name, so listings (the file:// artifact store) can skip half-written files.
TMP_MARKER = ".d2v-tmp-"


def is_temporary(name: str) -> bool:
    return TMP_MARKER in name


def _temporary_name(path: Path) -> Path:
    # Unique per call: two threads or processes writing one target never share a temporary file.
    return path.with_name(f".{path.name}{TMP_MARKER}{uuid.uuid4().hex[:8]}")


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    os.link(tmp, path)  # fails with FileExistsError if the name exists: an atomic create-if-absent


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def durable_replace(source: str | Path, target: str | Path) -> None:
    """fsync `source`, then rename it over `target` (same directory): for files written elsewhere
    under a name of their own, such as a resumable download's `.part` file."""
    _fsync(Path(source))
    os.replace(source, target)


@contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds, its file becomes `path`.

    With overwrite=False an existing `path` is kept and FileExistsError raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        _fsync(tmp)
        _commit(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None,
    overwrite: bool = True,
) -> Iterator[IO[Any]]:
    """Yield a file open for writing ("wb" or "w"); when the block succeeds, it becomes `path`."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        with open(tmp, mode.replace("w", "x"), encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _commit(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_open(path, "wb", overwrite=overwrite) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8, newlines written as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, sort_keys: bool = True) -> Path:
    """Indented JSON with a final newline (sorted keys unless the order means something)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def replace_dir(staging: Path, target: Path) -> None:
    """Put the finished directory `staging` where `target` is (same parent), replacing it."""
    if target.exists():
        # Directories cannot be renamed over a non-empty one: move the old aside first.
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old)
    else:
        os.replace(staging, target)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARKER}", dir=target.parent))
    try:
        yield staging
        replace_dir(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


__all__ = [
    "TMP_MARKER",
    "atomic_dir",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "durable_replace",
    "replace_dir",
    "is_temporary",
]
