"""d2v/cpu_limit.py: the cgroup CPU limit, read from fake v1/v2 trees and from a real limited cgroup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from d2v.cpu_limit import limit_cores, threads_for_limit

REPO = Path(__file__).resolve().parents[1]


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "proc_cgroup").write_text(proc)
    return tmp_path / "proc_cgroup", root


def test_v2_the_tightest_limit_on_the_path_wins(tmp_path: Path) -> None:
    proc, root = _tree(tmp_path, "0::/user.slice/app.scope\n", {
        "cgroup.controllers": "cpu memory\n",
        "user.slice/cpu.max": "150000 100000\n",
        "user.slice/app.scope/cpu.max": "max 100000\n",  # no limit of its own: the parent's binds
    })  # fmt: skip
    assert limit_cores(proc, root) == 1.5


def test_v2_without_limits_is_none(tmp_path: Path) -> None:
    proc, root = _tree(tmp_path, "0::/\n", {"cgroup.controllers": "cpu\n", "cpu.max": "max 100000\n"})
    assert limit_cores(proc, root) is None


def test_v1_a_container_sees_its_limit_at_the_mount_root(tmp_path: Path) -> None:
    # Without a cgroup namespace /proc/self/cgroup names the host's path, which the container's
    # mount does not have: the mount root holds the container's own files.
    proc, root = _tree(tmp_path, "5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })  # fmt: skip
    assert limit_cores(proc, root) == 0.5


def test_v1_minus_one_means_no_limit(tmp_path: Path) -> None:
    proc, root = _tree(tmp_path, "1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert limit_cores(proc, root) is None


def test_unreadable_or_garbled_files_count_as_no_limit(tmp_path: Path) -> None:
    assert limit_cores(tmp_path / "missing", tmp_path) is None
    proc, root = _tree(tmp_path, "0::/a\nnot a cgroup line\n", {"cgroup.controllers": "", "a/cpu.max": "lots 0\n"})
    assert limit_cores(proc, root) is None


@pytest.mark.parametrize(("limit", "cores", "threads"), [
    (None, 2, None), (0.68, 2, 1), (1.2, 2, 1), (1.5, 2, None), (1.9, 2, None), (2.0, 2, None), (3.0, 2, None),
    (1.5, 4, 2), (2.4, 8, 2), (0.1, 4, 1), (0.3, 1, None),
])  # fmt: skip
def test_threads_are_the_limit_rounded_to_whole_cores(limit: float | None, cores: int, threads: int | None) -> None:
    assert threads_for_limit(limit, cores) == threads


def test_the_cli_runs_one_thread_inside_a_real_limit() -> None:
    """In a real cgroup of 0.5 cores (root and a writable cgroup fs only), the `d2v` entry point's
    pin gives torch one thread, where it otherwise takes one per core (or per core of this
    machine's own limit)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from cpu_share import CpuShare, CpuShareError

    cores = len(os.sched_getaffinity(0))
    if cores < 2 or os.geteuid() != 0:
        pytest.skip("needs root and at least 2 cores")
    code = ("import json; from d2v import cpu_arithmetic; cpu_arithmetic.pin(); import torch; "
            "print(json.dumps(torch.get_num_threads()))")
    env = {"PATH": "/usr/bin:/bin"}
    try:
        with CpuShare(0.5 / cores) as limit:
            inside = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                                    preexec_fn=limit.join).stdout  # fmt: skip
    except CpuShareError as exc:
        pytest.skip(f"no writable cgroup cpu controller: {exc}")
    outside = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(inside.split()[-1]) == 1
    assert json.loads(outside.split()[-1]) == (threads_for_limit(limit_cores(), cores) or cores)
