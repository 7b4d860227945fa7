"""The `file://` backend, and `open_backend` (the interface it implements is in `interface`).

Keys are POSIX-style relative paths ("runs/<id>/model.pt"); a backend maps them onto a directory or
onto `s3://bucket/prefix/<key>`. Every write is atomic from a reader's point of view: a local file
appears under its final name only once complete (temporary name, then rename), and an S3 object
only once its upload (single or multipart) has completed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import ArtifactError, ArtifactNotFoundError, ConditionFailedError, RunExistsError
from d2v.artifacts.interface import Backend, BytesCallback, ObjectInfo
from d2v.atomic import atomic_open, atomic_write_bytes, is_temporary
from d2v.data.io import sha256_file

_COPY_CHUNK = 1 << 20
# Compare-and-swap on a directory: every conditional write of one store holds this file's lock, so
# the read-compare-rename cannot interleave with another writer's (processes and threads alike).
_CAS_LOCK = ".d2v-cas.lock"


class LocalBackend:
    """`file://<dir>`: the same layout as S3, in a local directory (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"file://{root}"

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root.joinpath(*key.split("/"))

    def put_file(self, key: str, path: Path, callback: BytesCallback | None = None, *,
                 sha256: str | None = None) -> None:
        target = self._path(key)
        try:
            with open(path, "rb") as src, atomic_open(target, "wb", overwrite=False) as dst:
                _copy(src, dst, callback)
        except FileExistsError:  # created by someone else, or by an earlier try of this upload
            if sha256 is None or sha256_file(target) != sha256:
                raise RunExistsError(f"{self.uri}: object {key!r} already exists with other content; "
                                     "run objects are never overwritten") from None

    def get_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFoundError(f"{self.uri}: no object {key!r}")
        with open(source, "rb") as src, open(path, "wb") as dst:  # the caller's name is temporary
            _copy(src, dst, callback)

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        try:
            atomic_write_bytes(self._path(key), data, overwrite=overwrite)
        except FileExistsError:  # overwrite=False: an atomic create-if-absent
            raise RunExistsError(f"{self.uri}: object {key!r} already exists") from None

    def get_bytes(self, key: str) -> bytes:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFoundError(f"{self.uri}: no object {key!r}")
        return source.read_bytes()

    def get_bytes_tagged(self, key: str) -> tuple[bytes, str] | None:
        source = self._path(key)
        if not source.is_file():
            return None
        data = source.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def put_bytes_if(self, key: str, data: bytes, *, expected_tag: str | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _CAS_LOCK, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            current = self.get_bytes_tagged(key)
            found = None if current is None else current[1]
            if found != expected_tag:
                raise ConditionFailedError(f"{self.uri}: object {key!r} changed since it was read "
                                           f"(tag {found or 'absent'}, expected {expected_tag or 'absent'})")
            atomic_write_bytes(self._path(key), data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        target = self._path(key)
        target.unlink(missing_ok=True)
        # Empty directories left behind are removed too, so a listing shows no trace of the key.
        for parent in target.parents:
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop here
                break

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest directory the prefix names; filter the rest by string prefix.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not base.is_dir():
            return
        found = []
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if is_temporary(name):  # a write in progress
                    continue
                full = Path(dirpath, name)
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ObjectInfo(key, full.stat().st_size))
        yield from sorted(found, key=lambda info: info.key)


def open_backend(cfg: ArtifactsConfig) -> Backend:
    """The backend for `cfg.uri`: `file://<dir>` or `s3://<bucket>[/<prefix>]`."""
    uri = cfg.uri
    if uri.startswith("file://"):
        path = uri[len("file://"):]
        if not path:
            raise ArtifactError(f"artifacts.uri: {uri!r} names no directory (e.g. file://artifacts)")
        return LocalBackend(Path(path))
    if uri.startswith("s3://"):
        from d2v.artifacts.s3 import S3Backend  # boto3 import cost only when S3 is used

        return S3Backend(cfg)
    raise ArtifactError(
        f"artifacts.uri: {uri!r} is not supported (expected file://<dir> or s3://<bucket>/<prefix>)"
    )


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArtifactError(f"invalid object key {key!r} (expected a relative path without '..')")


def _copy(source: BinaryIO, target: BinaryIO, callback: BytesCallback | None) -> None:
    while chunk := source.read(_COPY_CHUNK):
        target.write(chunk)
        if callback is not None:
            callback(len(chunk))


__all__ = ["LocalBackend", "open_backend"]
