"""benchmarks/gpu_check.sh: the whole script end to end in --smoke mode (CPU), the no-CUDA refusal,
and the pieces whose logic decides pass / fail (tolerances, peaks, timeouts)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402  (benchmarks/ is not a package)
import gpu_check_project  # noqa: E402

# Checks that only a GPU can make: skipped, with the reason, wherever the check runs on CPU.
DEVICE_ONLY = {
    ("peak", "bf16 dense peak, spec sheet"),
    ("throughput image", "MFU vs measured peak"),
    ("ddp", "nccl-gpu: 2-proc vs 1-proc loss"),
    ("ddp", "2-GPU / 1-GPU throughput"),
    ("resume", "kill-and-resume on CUDA"),
    ("eval", "evaluation on CUDA"),
}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, **extra}


def test_without_cuda_and_without_smoke_it_refuses_with_a_clear_message(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(out)], env=_env(CUDA_VISIBLE_DEVICES=""),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA device: use --smoke for the CPU code path" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_smoke_runs_every_part_and_marks_the_device_checks_skipped(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--smoke", "--out", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "part" in proc.stdout and "| status" in proc.stdout  # the table
    result = json.loads(out.read_text())
    assert result["mode"] == "smoke" and result["failures"] == []
    assert set(result["parts"]) == set(gpu_check.PARTS)
    for name, part in result["parts"].items():
        assert part["rc"] == 0 and part["rows"], name
    for key in ("device", "torch", "cuda", "matmul_peak_tflops", "matmul_peak_dtype", "wall_time_s"):
        assert key in result, key
    assert result["matmul_peak_tflops"] > 0 and result["matmul_peak_dtype"] == "fp32"
    rows = {(r["part"], r["metric"]): r for r in result["rows"]}
    assert {r["status"] for r in result["rows"]} <= {"pass", "info", "skipped"}
    for key in DEVICE_ONLY:
        assert rows[key]["status"] == "skipped" and rows[key]["note"], key
    for modality in ("image", "speech", "text"):  # each modality measured, on the tiny preset
        assert float(rows[(f"throughput {modality}", "samples/s")]["value"]) > 0
        assert result["parts"][f"throughput-{modality}"]["details"]["preset"] == "tiny"
    # The CPU code paths ran and passed: 2 gloo ranks against 1 process, a bit-exact resume, an evaluation.
    assert rows[("ddp", "gloo-cpu: 2-proc vs 1-proc loss, max rel. diff over 4 updates")]["status"] == "pass"
    assert result["parts"]["ddp"]["details"]["gloo-cpu"]["world_size_2proc"] == 2
    resume = result["parts"]["resume"]["details"]
    assert resume["victim_rc"] == -9 and resume["bit_exact"] and resume["final_steps"] == [6, 6]
    assert rows[("resume", "resumed vs uninterrupted, max |w diff| (cpu)")]["status"] == "pass"
    eval_rows = [r for r in result["rows"] if r["part"] == "eval" and r["metric"].startswith("d2v evaluate image")]
    assert len(eval_rows) == 1 and eval_rows[0]["status"] == "pass"
    assert not list((REPO / "benchmarks" / "results").glob("*.d2v-tmp-*"))  # nothing half-written left


def test_the_ddp_tolerance_is_the_sampling_spread_of_a_difference_or_the_arithmetic_floor() -> None:
    assert gpu_check.ddp_tolerance(0.002, 1e-5) == pytest.approx(5 * math.sqrt(2) * 0.002)
    assert gpu_check.ddp_tolerance(0.0, 1e-3) == 1e-3


def test_spec_sheet_peaks_tell_the_h100_variants_apart() -> None:
    assert gpu_check.spec_peak_tflops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4)
    assert gpu_check.spec_peak_tflops("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert gpu_check.spec_peak_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert gpu_check.spec_peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_the_part_budgets_add_up_to_less_than_ten_minutes_on_one_gpu() -> None:
    assert gpu_check.BUDGET.total(1) < 600


def test_tokens_per_sample_counts_patches_frames_and_tokens() -> None:
    from d2v.config import ModelChoice
    from d2v.models import model_spec

    def spec(modality: str):
        return model_spec(modality, ModelChoice(version=2, preset="base"))

    image, speech, text = (gpu_check.released_batch(m) for m in ("image", "speech", "text"))
    assert gpu_check.tokens_per_sample("image", image, spec("image")) == 196  # 224 / 16 squared
    assert gpu_check.tokens_per_sample("speech", speech, spec("speech")) == 999  # 20 s at 50 Hz, less the CNN's edges
    assert gpu_check.tokens_per_sample("text", text, spec("text")) == 512


def test_max_abs_difference_reports_the_largest_gap_and_bit_equality() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    assert gpu_check_project.max_abs_difference(a, {k: v.clone() for k, v in a.items()}) == (0.0, True)
    worst, exact = gpu_check_project.max_abs_difference(a, {"w": torch.tensor([1.0, 2.5]), "n": torch.tensor(3)})
    assert worst == pytest.approx(0.5) and not exact
    assert gpu_check_project.max_abs_difference(a, {"w": a["w"]}) == (math.inf, False)


def test_a_part_over_its_budget_is_killed_and_reported_as_a_failure(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "part_budget", lambda name, gpus: 1)
    ctx = gpu_check.Context(smoke=True, work=tmp_path, gpus=0)
    output, status = gpu_check.run_part("peak", ctx, tmp_path / "peak.log")
    assert status["rc"] is None and status["seconds"] < 30
    assert [(r.part, r.metric, r.value, r.status) for r in output.rows] == [
        ("peak", "part completed", "timed out after 1 s", "fail")]


def test_the_evaluation_device_row_says_why_it_was_skipped_or_whether_the_gpu_was_used(tmp_path: Path) -> None:
    cpu, gpu = gpu_check.Context(True, tmp_path, 0), gpu_check.Context(False, tmp_path, 1)
    missing = gpu_check.eval_device_row(gpu, available=False, ran=True, cuda_bytes=0)
    assert (missing.status, missing.note) == ("skipped", "evaluate.device not available")
    assert gpu_check.eval_device_row(cpu, available=True, ran=True, cuda_bytes=0).status == "skipped"
    assert gpu_check.eval_device_row(gpu, available=True, ran=True, cuda_bytes=2**20).status == "pass"
    assert gpu_check.eval_device_row(gpu, available=True, ran=True, cuda_bytes=0).status == "fail"  # ran on CPU


def test_the_table_has_a_row_per_check() -> None:
    rows = [gpu_check.Row("ddp", "loss", "0.1 %", "<= 1 %", "pass"), gpu_check.Row("eval", "cuda", None, "", "skipped", "why")]
    lines = gpu_check.format_table(rows).splitlines()
    assert len(lines) == 4 and "skipped" in lines[3] and lines[3].endswith("why")
