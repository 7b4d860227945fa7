"""benchmarks/bench_cpu_limit.py: the table of steps under a CPU limit, and its skip where no limit can be set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_cpu_limit  # noqa: E402  (benchmarks/ is not a package)
from cpu_share import CpuShareError  # noqa: E402


class _NoCgroups:
    def __init__(self, *_: object, **__: object) -> None:
        raise CpuShareError("no cgroup cpu controller at /nowhere")


def test_no_cgroups_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_cpu_limit, "CpuShare", _NoCgroups)
    monkeypatch.setattr(sys, "argv", ["bench_cpu_limit.py"])
    bench_cpu_limit.main()  # returns: `make bench` goes on to the next script
    assert capsys.readouterr().out.strip() == "skipped: no cgroup cpu controller at /nowhere"


class _FakeLimit:
    def __init__(self, *_: object, **__: object) -> None:
        pass

    def __enter__(self) -> "_FakeLimit":
        return self

    def __exit__(self, *_: object) -> None:
        pass


def test_the_table_divides_the_default_threads_time_by_the_fitted_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[int, bool]] = []

    def fake_child(threads: int, steps: int, limit: object) -> dict:
        calls.append((threads, limit is not None))
        per_step = {(4, False): 0.1, (4, True): 0.4, (1, True): 0.25}[(threads, limit is not None)]
        rows = [{"modality": m, "version": v, "s_per_step": per_step} for m, v, _, _ in bench_cpu_limit.ROWS]
        return {"threads": threads, "peak": 100.0, "rows": rows}

    monkeypatch.setattr(bench_cpu_limit, "CpuShare", _FakeLimit)
    monkeypatch.setattr(bench_cpu_limit, "run_child", fake_child)
    monkeypatch.setattr(bench_cpu_limit, "RESULTS", tmp_path / "cpu_limit.json")
    monkeypatch.setattr("d2v.cpu_limit.usable_cores", lambda: 4)
    monkeypatch.setattr(sys, "argv", ["bench_cpu_limit.py", "--cpu-share", "0.3"])  # 1.2 cores -> 1 thread
    bench_cpu_limit.main()
    assert calls == [(4, False), (4, True), (1, True)]
    written = json.loads((tmp_path / "cpu_limit.json").read_text())
    assert written["fitted_threads"] == 1 and len(written["rows"]) == len(bench_cpu_limit.ROWS)
    assert {row["fit_speedup"] for row in written["rows"]} == {1.6}  # 0.4 / 0.25
    assert "1.60x" in capsys.readouterr().out
