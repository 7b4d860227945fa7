"""Progress reporting for transfers: a bar for large files on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from d2v.artifacts.backend import BytesCallback

LARGE_FILE_BYTES = 8 * 1024 * 1024


class TransferProgress(Protocol):
    """Told about each file of a publish or download, in order."""

    def file_started(self, action: str, path: str, size: int) -> BytesCallback | None:
        """Return a callback for bytes moved, or None."""
        ...

    def file_done(self, action: str, path: str, size: int) -> None: ...


class NoProgress:
    def file_started(self, action: str, path: str, size: int) -> BytesCallback | None:
        return None

    def file_done(self, action: str, path: str, size: int) -> None:
        return None


class ConsoleProgress:
    """One line per file; a tqdm byte bar while a large file moves, when `stream` is a terminal."""

    def __init__(self, stream: TextIO | None = None, large_bytes: int = LARGE_FILE_BYTES) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.large_bytes = large_bytes
        self._bar = None

    def file_started(self, action: str, path: str, size: int) -> BytesCallback | None:
        if size < self.large_bytes or not self.stream.isatty():
            return None
        from tqdm import tqdm

        self._bar = tqdm(total=size, desc=f"{action} {path}", unit="B", unit_scale=True,
                         unit_divisor=1024, file=self.stream, leave=False)
        return self._bar.update

    def file_done(self, action: str, path: str, size: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(f"{action} {path} ({human_size(size)})", file=self.stream, flush=True)


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["ConsoleProgress", "LARGE_FILE_BYTES", "NoProgress", "TransferProgress", "human_size"]
