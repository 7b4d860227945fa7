"""Why a checkpoint could not be written, in one line: the file, the OS's reason, and the state the
previous checkpoint is in (d2v.train.checkpoint raises these)."""

from __future__ import annotations

import errno as errno_codes
import os
import re
from pathlib import Path

from d2v.errors import D2VError


class CheckpointError(D2VError):
    """A checkpoint is missing, unreadable, belongs to another model, or cannot be written."""


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells whether `path` changed: (device, inode, size, mtime), None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_OS_ERROR_CODE = re.compile(r"os error (\d+)")


def os_reason(exc: BaseException) -> str | None:
    """The OS's reason behind a failed write ('[Errno 28] No space left on device'), wherever it sits:
    the exception, its __cause__/__context__ chain (torch's zip writer masks the OSError with a
    RuntimeError), or 'os error N' in the text (safetensors' Rust error)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    chain: list[BaseException] = []
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        if isinstance(current, OSError) and current.errno:
            return f"[Errno {current.errno}] {current.strerror or os.strerror(current.errno)}"
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    for current in chain:
        match = _OS_ERROR_CODE.search(str(current))
        if match:
            code = int(match.group(1))
            return f"[Errno {code}] {os.strerror(code)}"
    return None


# A full disk or file-size limit: the error message says what frees the way.
_FULL = (errno_codes.ENOSPC, errno_codes.EFBIG, errno_codes.EDQUOT)


def write_error(path: Path, what: str, exc: Exception, previous: tuple | None) -> CheckpointError:
    """One line: the file, the OS's reason, and what state the previous checkpoint is in."""
    reason = os_reason(exc)
    full = reason is not None and any(f"[Errno {code}]" in reason for code in _FULL)
    reason = reason or f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if previous is None:
        state = "no checkpoint was written"
    elif file_identity(path) == previous:
        state = "the previous checkpoint is intact"
    else:
        state = "the previous checkpoint may have changed"
    hint = "; free disk space (or raise the file-size limit), then resume" if full else ""
    return CheckpointError(f"{path}: cannot write {what}: {reason}; {state}{hint}")
