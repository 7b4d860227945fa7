"""Driving a real d2v process to a chosen point, then killing (or limiting) it there.

A poll from outside cannot land a SIGKILL "after update 7" or "while 13 MiB of the weights file are
written" reproducibly: the victim runs on while the poller looks. `stop_when` therefore runs the
victim in short slices (SIGCONT, sleep, SIGSTOP, wait until the kernel reports it stopped) and
evaluates a predicate on the files it wrote while it is frozen. The first time the predicate holds,
the victim is still frozen exactly in the state the predicate saw: a SIGKILL then kills it there
(`kill_when`), or the caller changes something (an rlimit) and lets it go on. The victim executes
only its own code; the slicing decides only when the signal arrives.

Also here: hashing trees, finding the temporary files d2v's atomic writes leave behind, and the
environment the subprocesses run in.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from d2v.atomic import TMP_MARKER

T = TypeVar("T")
D2V = [sys.executable, "-m", "d2v.cli"]


def d2v_env() -> dict[str, str]:
    """The environment of every d2v subprocess: one intra-op thread, no bars, no launcher settings
    leaking in from the caller (torchrun variables would make `d2v pretrain` re-launch itself)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("D2V_") and k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID")}
    env.update(CI="true", OMP_NUM_THREADS="1", DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1")
    return env


def start(args: Sequence[str], cwd: Path) -> subprocess.Popen:
    """`d2v <args>` in `cwd`, output captured. Signals keep the dispositions of this process
    (restore_signals=False): Python ignores SIGXFSZ, so does the child, and a write past
    RLIMIT_FSIZE fails with EFBIG instead of killing it (no preexec_fn: unsafe with threads)."""
    return subprocess.Popen([*D2V, *args], cwd=cwd, env=d2v_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, restore_signals=False)


def run(args: Sequence[str], cwd: Path, timeout: float = 300) -> str:
    """`d2v <args>` to completion; its output. Raises with the output if it fails."""
    proc = start(args, cwd)
    output = finish(proc, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"d2v {' '.join(args)} exited {proc.returncode}:\n{output[-4000:]}")
    return output


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        reap(proc)
        raise
    return output or ""


def reap(proc: subprocess.Popen) -> None:
    """Kill `proc` (by its pid) if it still runs, and collect it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.communicate(timeout=30)
    except (subprocess.TimeoutExpired, ValueError):
        pass


# ------------------------------------------------------------------------------ freezing a victim


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, D, T, Z, ...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _freeze(pid: int, timeout: float = 5.0) -> bool:
    """SIGSTOP `pid` and wait until it is stopped; False if it exited instead."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        state = proc_state(pid)
        if state in ("T", "t"):
            return True
        if state in (None, "Z", "X"):
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop within {timeout} s (state {state})")
        time.sleep(0.0001)


def stop_when(
    proc: subprocess.Popen,
    predicate: Callable[[], T | None],
    *,
    armed: Callable[[], bool] | None = None,
    slice_s: float = 0.002,
    poll_s: float = 0.005,
    timeout: float = 120.0,
) -> T | None:
    """Run `proc` until `predicate()` (evaluated while it is frozen) returns something truthy; return
    that with `proc` left stopped (SIGSTOP). None if `proc` exited first. Until `armed()` holds, the
    victim runs freely (polled every `poll_s`), afterwards in slices of `slice_s`."""
    deadline = time.monotonic() + timeout
    while armed is not None and not armed():
        if proc.poll() is not None:
            return None
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.args}: never reached the armed state in {timeout} s")
        time.sleep(poll_s)
    while True:
        if not _freeze(proc.pid):
            return None
        seen = predicate()
        if seen:
            return seen
        os.kill(proc.pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.args}: the kill point was not reached in {timeout} s")
        time.sleep(slice_s)


def kill_when(proc: subprocess.Popen, predicate: Callable[[], T | None], **kwargs: Any) -> T | None:
    """`stop_when`, then SIGKILL the frozen victim in exactly the state the predicate saw."""
    seen = stop_when(proc, predicate, **kwargs)
    if seen:
        os.kill(proc.pid, signal.SIGKILL)
    return seen


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def ignores_sigxfsz(pid: int) -> bool:
    """Whether `pid` ignores SIGXFSZ (its SigIgn mask in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGXFSZ - 1) & 1)
    return False


# ------------------------------------------------------------------------------ files


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(root: Path) -> dict[str, str] | None:
    """Relative path -> sha256 of every file under `root`; None if `root` does not exist."""
    if not root.is_dir():
        return None
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def temporaries(root: Path) -> list[str]:
    """Files and directories under `root` that d2v's atomic writes create and rename or delete:
    `*.d2v-tmp-*` (temporary files, staging directories) and `.<name>.old-<pid>` (a directory moved
    aside while its replacement is renamed in)."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if TMP_MARKER in p.name or (p.name.startswith(".") and ".old-" in p.name))


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


__all__ = ["D2V", "alive", "children_of", "d2v_env", "finish", "ignores_sigxfsz", "kill_when", "mib",
           "proc_state", "reap", "run", "sha256_file", "start", "stop_when", "temporaries", "tree_digest",
           "tree_size"]
