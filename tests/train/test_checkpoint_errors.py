"""d2v.train.checkpoint_errors: the OS's reason found wherever a writer hid it, and the one-line message."""

from __future__ import annotations

import errno
from pathlib import Path

from d2v.train.checkpoint_errors import CheckpointError, file_identity, os_reason, write_error


def test_os_reason_reads_the_errno_of_an_os_error_masked_by_another_exception() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from inner
    except RuntimeError as outer:
        assert os_reason(outer) == "[Errno 28] No space left on device"


def test_os_reason_reads_a_rust_style_os_error_code_in_the_text() -> None:
    reason = os_reason(Exception("Error while serializing: IoError(Os { code: 27, kind: FileTooLarge, os error 27 })"))
    assert reason is not None and reason.startswith("[Errno 27]")


def test_os_reason_is_none_without_an_os_cause() -> None:
    assert os_reason(ValueError("bad value")) is None


def test_write_error_names_the_file_the_reason_and_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old")
    previous = file_identity(path)
    error = write_error(path, "the checkpoint", OSError(errno.ENOSPC, "No space left on device"), previous)
    assert isinstance(error, CheckpointError)
    assert str(error) == (
        f"{path}: cannot write the checkpoint: [Errno 28] No space left on device; the previous checkpoint is "
        "intact; free disk space (or raise the file-size limit), then resume"
    )
    fresh = write_error(tmp_path / "new.pt", "the checkpoint", ValueError("no"), None)
    assert str(fresh).endswith("cannot write the checkpoint: ValueError: no; no checkpoint was written")


def test_file_identity_changes_when_the_file_does(tmp_path: Path) -> None:
    path = tmp_path / "f"
    assert file_identity(path) is None
    path.write_bytes(b"a")
    first = file_identity(path)
    path.write_bytes(b"ab")
    assert file_identity(path) != first
