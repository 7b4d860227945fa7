"""Run a command with its output streamed line by line to a callback (a Prefect logger, print).

Prefect-free on purpose: the flows pass `get_run_logger().info`, tests pass a list's `append`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from d2v.errors import D2VError

TAIL_LINES = 40


class StageFailed(D2VError):
    """A stage command exited non-zero; the message carries the command and its last lines."""


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment with this interpreter's bin/ first on PATH.

    A worker may start flows with a PATH that lacks the venv: `dvc`, `d2v` and `torchrun` must be
    the ones installed beside the Python running the flow, or stages would run other versions.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")  # log lines arrive as they are printed, not at exit
    env.update(extra or {})
    return env


def run_streaming(
    cmd: Sequence[str],
    cwd: Path,
    on_line: Callable[[str], object],
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Run `cmd` in `cwd`, hand every output line (stdout and stderr merged) to `on_line`.

    Returns the last TAIL_LINES lines; raises StageFailed with them when the command fails.
    """
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(env) if env is not None else tool_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
        )
    except OSError as exc:
        raise StageFailed(f"{' '.join(cmd)}: cannot start in {cwd}: {exc}") from exc
    assert proc.stdout is not None
    with proc.stdout:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_line(line)
    code = proc.wait()
    if code != 0:
        last = "\n".join(tail)
        raise StageFailed(f"{' '.join(cmd)} (in {cwd}) exited with {code}; last lines:\n{last}")
    return list(tail)


__all__ = ["StageFailed", "TAIL_LINES", "run_streaming", "tool_env"]
