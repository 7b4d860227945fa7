"""The CPU time this process may use, from its cgroup's CFS bandwidth limit (Docker `--cpus`,
Kubernetes CPU limits, systemd `CPUQuota=`).

torch starts one thread per visible core whatever the limit. Under a limit below the core count the
kernel throttles each thread's run queue on its own, so an OpenMP thread often spins at a barrier,
burning the shared quota, while its sibling waits to be scheduled again. Measured on a 2-core
machine limited to 0.68 of a core (benchmarks/bench_cpu_limit.py): the tiny models' training steps
took 1.16-1.35x longer with 2 threads than with 1 (docs/benchmarks.md, "Under a CPU limit").
`d2v.cpu_arithmetic.pin` therefore sizes the thread pools from `limit_cores()` when the user has
not (`threads_for_limit`).

Reads cgroup v2 (`cpu.max`) and v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`) along the process's
cgroup path and every ancestor, since a parent's limit binds its children; the tightest one wins.
Whatever cannot be read counts as "no limit": this only picks a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _ancestors(path: str) -> list[str]:
    """'/a/b' -> ['a/b', 'a', '']: the cgroup and every parent, as paths below the mount."""
    parts = [part for part in path.split("/") if part]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_dir_limit(directory: Path) -> float | None:
    """cpu.max holds "<quota> <period>" in microseconds, or "max <period>" for no limit."""
    fields = (_read(directory / "cpu.max") or "").split()
    if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]):
        return int(fields[0]) / int(fields[1])
    return None


def _v1_dir_limit(directory: Path) -> float | None:
    """cpu.cfs_quota_us is -1 for no limit; the period is usually 100000 (100 ms)."""
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if quota and period and quota.isdigit() and period.isdigit() and int(period):
        return int(quota) / int(period)
    return None


def _tightest(mount: Path, group: str, dir_limit: Callable[[Path], float | None]) -> float | None:
    """The smallest limit on `group`'s path below `mount`, the group itself and every ancestor."""
    limits = [dir_limit(mount / below) for below in _ancestors(group)]
    return min((limit for limit in limits if limit is not None), default=None)


def limit_cores(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit in cores (0.5 = half a core's time), or None when there is none or it cannot be read."""
    text = _read(proc_cgroup)
    if text is None:
        return None
    limits = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, group = fields
        if controllers == "" and (root / "cgroup.controllers").is_file():  # the v2 unified hierarchy
            limits.append(_tightest(root, group, _v2_dir_limit))
        elif "cpu" in controllers.split(","):
            for name in V1_CPU_MOUNTS:
                if (root / name).is_dir():
                    limits.append(_tightest(root / name, group, _v1_dir_limit))
                    break
    return min((limit for limit in limits if limit is not None), default=None)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), which is what torch sizes its pool by."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_for_limit(limit: float | None, cores: int) -> int | None:
    """The thread count to use under `limit`: the limit rounded to the nearest whole core (at least
    1), or None when that is no fewer than the cores themselves (torch's own default is then right).

    Rounded, not floored: on 2 cores, 1 thread beat 2 by 1.16-1.35x under 0.68 CPUs, drew level
    (0.94-1.23x) under 1.2, and lost under 1.5 (0.76-1.02x) and 1.9 (0.60-0.70x)."""
    if limit is None:
        return None
    threads = max(1, int(limit + 0.5))
    return threads if threads < cores else None
