"""benchmarks/cpu_share.py: the cgroup CPU limit that emulates a slower machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from cpu_share import PERIOD_US, CpuShare, CpuShareError, quota_us  # noqa: E402


def test_quota_is_the_share_of_every_core_per_period() -> None:
    assert quota_us(0.1, cores=2) == 20_000  # 10 % of 2 cores = 20 ms of CPU per 100 ms
    assert quota_us(1.0, cores=4) == 4 * PERIOD_US
    assert quota_us(1e-6, cores=1) == 1000  # the kernel refuses quotas under 1 ms


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_0_1_is_refused_by_value(share: float) -> None:
    with pytest.raises(CpuShareError, match=rf"cpu share {share!r}: expected a fraction of the machine in \(0, 1\]"):
        quota_us(share, cores=2)


def test_no_cpu_controller_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CpuShareError, match="no cgroup cpu controller"):
        with CpuShare(0.5, root=tmp_path):
            pass


def _forget_pseudo_files(group: Path) -> None:
    """On a real cgroup file system the kernel's files vanish with the group; on tmp_path, by hand."""
    for path in group.iterdir():
        path.unlink()


def _v2_layout(root: Path) -> Path:
    (root / "cgroup.controllers").write_text("cpu memory\n")
    return root


def _v1_layout(root: Path) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    return root / "cpu"


@pytest.mark.parametrize(("layout", "share", "limit_files", "procs_file"), [
    (_v2_layout, 0.25, {"cpu.max": f"50000 {PERIOD_US}\n"}, "cgroup.procs"),
    (_v1_layout, 0.5, {"cpu.cfs_period_us": f"{PERIOD_US}\n", "cpu.cfs_quota_us": f"{PERIOD_US}\n"}, "tasks"),
], ids=["v2", "v1"])  # fmt: skip
def test_each_cgroup_layout_gets_its_limit_files_and_the_child_pid(
    tmp_path: Path, layout: Callable[[Path], Path], share: float, limit_files: dict[str, str], procs_file: str
) -> None:
    parent = layout(tmp_path)
    with CpuShare(share, cores=2, root=tmp_path) as limit:
        assert limit.group is not None and limit.group.parent == parent
        for name, text in limit_files.items():
            assert (limit.group / name).read_text() == text
        limit.join()
        assert (limit.group / procs_file).read_text() == f"{os.getpid()}\n"
        group = limit.group
        _forget_pseudo_files(group)
    assert not group.exists()


def test_join_outside_the_block_is_refused() -> None:
    with pytest.raises(CpuShareError, match="outside its `with` block"):
        CpuShare(0.5).join()


def _real_cgroups_writable() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        with CpuShare(0.5):
            return True
    except CpuShareError:
        return False


@pytest.mark.skipif(not _real_cgroups_writable(), reason="needs root and a writable cgroup cpu controller")
def test_a_child_in_a_small_share_is_throttled() -> None:
    """A single-threaded busy loop of 0.3 s of CPU, limited to 5 % of one core's worth, must be
    throttled by the kernel and take several times longer than its CPU time."""
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    with CpuShare(0.05 / (os.cpu_count() or 1)) as limit:
        begin = time.monotonic()
        subprocess.run([sys.executable, "-c", burn], check=True, preexec_fn=limit.join)
        wall = time.monotonic() - begin
        throttled = limit.throttled_seconds()
    assert throttled > 0
    assert wall > 2.0  # 0.3 s of CPU at 5 ms per 100 ms is ~6 s; unthrottled it is ~0.35 s

