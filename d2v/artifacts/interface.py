"""What the artifact store is written against: a storage backend, and a listener for transfers.

Its own module so that backends (backend.LocalBackend, s3.S3Backend) and the store all import it and
never each other: backend.open_backend imports the S3 backend only when an s3:// URI asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Called with the number of bytes moved since the previous call (the boto3 Callback convention).
BytesCallback = Callable[[int], None]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Backend(Protocol):
    """What the artifact store needs from a storage system."""

    uri: str

    def put_file(self, key: str, path: Path, callback: BytesCallback | None = None, *,
                 sha256: str | None = None) -> None:
        """Create `key` from a local file, never replacing an existing object (RunExistsError),
        unless it already holds exactly this content (`sha256`): then a retried upload succeeds."""
        ...

    def get_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None: ...

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        """Write `data`; with overwrite=False refuse (RunExistsError) if `key` already exists."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_bytes_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object and a tag that changes whenever it is rewritten (S3: its ETag); None if absent."""
        ...

    def put_bytes_if(self, key: str, data: bytes, *, expected_tag: str | None) -> None:
        """Compare-and-swap: write only if `key` still has `expected_tag` (None: only if absent);
        otherwise raise ConditionFailedError and change nothing."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key` if present (checkpoint mirrors prune old steps; runs are never deleted)."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (plain string prefix), in key order."""
        ...


class TransferProgress(Protocol):
    """Told about each file of a publish or download, in order (d2v.progress.TransferLog shows it)."""

    def file_started(self, action: str, path: str, size: int) -> BytesCallback | None:
        """Return a callback for bytes moved, or None."""
        ...

    def file_done(self, action: str, path: str, size: int) -> None: ...


class NoProgress:
    def file_started(self, action: str, path: str, size: int) -> BytesCallback | None:
        return None

    def file_done(self, action: str, path: str, size: int) -> None:
        return None


__all__ = ["Backend", "BytesCallback", "NoProgress", "ObjectInfo", "TransferProgress"]
