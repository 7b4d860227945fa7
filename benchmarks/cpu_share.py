"""Run child processes on a fixed share of this machine's CPU time: a CPU-limited container.

A Linux CFS bandwidth limit on a cgroup caps the CPU time its processes get per 100 ms period, as
Docker's `--cpus` and Kubernetes' CPU limits do. A share of 0.34 of a 2-core machine (0.68 CPUs)
puts a 2-thread fp32 matmul at a third of its unlimited rate, the peak of a much slower machine.
It is not such a machine: the limit caps the pool, not each core, so single-threaded work keeps
68 % of its speed where a core a third as fast would keep a third, and OpenMP threads throttled one
at a time can lose more than the share (d2v/cpu_limit.py). Emulated times of a slower machine are
therefore floors; for a limited container they are measurements.

Needs root and a writable cgroup file system: cgroup v2 (`cpu.max` in a child of
/sys/fs/cgroup) or v1 (`cpu.cfs_quota_us` under /sys/fs/cgroup/cpu). Children join the group
before they exec, so every process they start is limited too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import Callable

from d2v.cpu_limit import usable_cores

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the kernel's default CFS period: quota is refilled every 100 ms


class CpuShareError(RuntimeError):
    """The limit cannot be set up here (no permission, no cpu controller, a bad share)."""


def quota_us(share: float, cores: int, period_us: int = PERIOD_US) -> int:
    """CPU microseconds per period for `share` of `cores` cores (at least the kernel's 1 ms minimum)."""
    if not 0 < share <= 1:
        raise CpuShareError(f"cpu share {share!r}: expected a fraction of the machine in (0, 1]")
    return max(1000, round(share * cores * period_us))


def preexec(limit: "CpuShare | None") -> Callable[[], None] | None:
    """subprocess's `preexec_fn` that puts the child in `limit`; None (run as is) without one."""
    return None if limit is None else limit.join


class CpuShare:
    """A temporary cgroup whose processes get `share` of all cores' time; `join` puts a child in it.

        with CpuShare(0.1) as limit:
            subprocess.run(cmd, preexec_fn=limit.join)
    """

    def __init__(self, share: float, cores: int | None = None, root: Path = CGROUP_ROOT) -> None:
        self.quota_us = quota_us(share, cores or usable_cores())
        self.root = root
        self.group: Path | None = None
        self._procs_file: Path | None = None

    def __enter__(self) -> "CpuShare":
        name = f"d2v-cpu-share-{os.getpid()}"
        v2 = (self.root / "cgroup.controllers").is_file()
        parent = self.root if v2 else self.root / "cpu"
        if not v2 and not (parent / "cpu.cfs_quota_us").is_file():
            raise CpuShareError(f"no cgroup cpu controller at {self.root} (expected cgroup.controllers or "
                                "cpu/cpu.cfs_quota_us): CPU-share emulation needs Linux cgroups")
        group = parent / name
        try:
            group.mkdir()
        except OSError as exc:
            raise CpuShareError(f"cannot create cgroup {group}: {exc.strerror} (needs root and a writable "
                                "cgroup file system)") from exc
        self.group = group
        try:
            if v2:
                (group / "cpu.max").write_text(f"{self.quota_us} {PERIOD_US}\n")
                self._procs_file = group / "cgroup.procs"
            else:
                (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                (group / "cpu.cfs_quota_us").write_text(f"{self.quota_us}\n")
                self._procs_file = group / "tasks"
        except OSError as exc:
            self._remove()
            raise CpuShareError(f"cannot set the CPU limit of {group}: {exc}") from exc
        return self

    def join(self) -> None:
        """Move the calling process into the group: a `preexec_fn` for subprocess."""
        if self._procs_file is None:
            raise CpuShareError("CpuShare.join outside its `with` block")
        self._procs_file.write_text(f"{os.getpid()}\n")

    def throttled_seconds(self) -> float:
        """Time the group's processes spent throttled so far (cpu.stat), in seconds."""
        assert self.group is not None
        stats = dict(line.split() for line in (self.group / "cpu.stat").read_text().splitlines() if line.strip())
        if "throttled_usec" in stats:  # v2
            return int(stats["throttled_usec"]) / 1e6
        return int(stats.get("throttled_time", 0)) / 1e9  # v1: nanoseconds

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._remove()

    def _remove(self) -> None:
        # A cgroup can only be removed once its processes have exited; give stragglers a moment.
        if self.group is None:
            return
        for _ in range(50):
            try:
                self.group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        else:
            print(f"warning: could not remove {self.group} (processes still in it?); rmdir it by hand")
        self.group = None
