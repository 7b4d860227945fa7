"""The storage interface the artifact store is written against, and the `file://` backend.

Keys are POSIX-style relative paths ("runs/<id>/model.pt"); a backend maps them onto a directory or
onto `s3://bucket/prefix/<key>`. Every write is atomic from a reader's point of view: a local file
appears under its final name only once complete (temporary name, then rename), and an S3 object
only once its upload (single or multipart) has completed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import ArtifactError, ArtifactNotFoundError, RunExistsError

# Called with the number of bytes moved since the previous call (the boto3 Callback convention).
BytesCallback = Callable[[int], None]

_TMP_MARKER = ".d2v-tmp-"
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Backend(Protocol):
    """What the artifact store needs from a storage system."""

    uri: str

    def put_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None: ...

    def get_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        """Write `data`; with overwrite=False refuse (RunExistsError) if `key` already exists."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (plain string prefix), in key order."""
        ...


class LocalBackend:
    """`file://<dir>`: the same layout as S3, in a local directory (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"file://{root}"

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root.joinpath(*key.split("/"))

    def put_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None:
        target = self._path(key)
        tmp = _tmp_name(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _copy(path, tmp, callback)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def get_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFoundError(f"{self.uri}: no object {key!r}")
        _copy(source, path, callback)

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(target)
        try:
            tmp.write_bytes(data)
            if overwrite:
                os.replace(tmp, target)
            else:
                # link() fails if the name exists: an atomic create-if-absent.
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise RunExistsError(f"{self.uri}: object {key!r} already exists") from None
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFoundError(f"{self.uri}: no object {key!r}")
        return source.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest directory the prefix names; filter the rest by string prefix.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not base.is_dir():
            return
        found = []
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if _TMP_MARKER in name:
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


def _tmp_name(target: Path) -> Path:
    return target.with_name(f"{target.name}{_TMP_MARKER}{uuid.uuid4().hex[:8]}")


def _copy(source: Path, target: Path, callback: BytesCallback | None) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(_COPY_CHUNK):
            dst.write(chunk)
            if callback is not None:
                callback(len(chunk))


__all__ = ["Backend", "BytesCallback", "LocalBackend", "ObjectInfo", "open_backend"]
