"""benchmarks/bench_demo_flops.py: the counter, the floor arithmetic and the measured-seconds input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_demo_flops  # noqa: E402  (benchmarks/ is not a package)


def test_a_matmul_counts_two_flops_per_multiply_add() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert bench_demo_flops.counted(lambda: a @ b) == 2 * 8 * 16 * 4
    assert bench_demo_flops.counted(lambda: a + 1) == 0  # elementwise work is not counted


def test_floors_divide_by_each_peak_and_measured_runs_get_their_share() -> None:
    flops = {"pretrain@text": 9_000_000_000_000, "evaluate@text": 3_000_000_000_000}
    rows = bench_demo_flops.table_rows(flops, [450.0, 45.0], {"pretrain@text": 50.0}, run_peak=400.0)
    assert [row["stage"] for row in rows] == ["pretrain@text", "evaluate@text", "total"]
    assert rows[0]["floor_s"] == {"450": 20.0, "45": 200.0} and rows[2]["tflop"] == 12.0
    assert rows[0]["share_of_peak"] == pytest.approx(9e12 / 400e9 / 50.0, abs=1e-3)
    assert "measured_s" not in rows[1]  # a stage the timing run did not list
    assert rows[2]["measured_s"] == 50.0


def test_measured_seconds_come_from_a_stage_timing_json(tmp_path: Path) -> None:
    path = tmp_path / "demo_stages.json"
    path.write_text(json.dumps({"matmul_peak_gflops": 398.0, "stages": [{"stage": "evaluate@text", "seconds": 98.9}]}))
    assert bench_demo_flops.measured_seconds(path) == ({"evaluate@text": 98.9}, 398.0)
    assert bench_demo_flops.measured_seconds(tmp_path / "absent.json") == ({}, None)
    path.write_text(json.dumps({"stages": []}))
    with pytest.raises(SystemExit, match="not a bench_demo_stages.py result"):
        bench_demo_flops.measured_seconds(path)


def test_without_checkpoints_it_skips_and_exits_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a fresh clone: no models/ yet, so `make bench` must go on
    monkeypatch.setattr(sys, "argv", ["bench_demo_flops.py", "--modalities", "image"])
    bench_demo_flops.main()
    assert capsys.readouterr().out.startswith("skipped: no pretrained checkpoint at models/image/checkpoint.pt")
