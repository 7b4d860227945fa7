"""Resume equality across a real crash: SIGKILL a training process after a checkpoint, resume it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from step_log import step_rows
import torch

SELFTEST = [sys.executable, "-m", "d2v.train._selftest"]
STEPS, EVERY = 12, 4


def _env() -> dict[str, str]:
    return {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}


def _start(out: Path, *extra: str) -> subprocess.Popen:
    args = [*SELFTEST, str(out), "--steps", str(STEPS), "--checkpoint-every", str(EVERY), *extra]
    return subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output


def _summary(out: Path) -> dict:
    """The summary without its timings, which differ between any two runs."""
    summary = json.loads((out / "metrics" / "image" / "metrics.json").read_text())
    return {k: v for k, v in summary.items() if k not in ("train_time_s", "samples_per_s")}


def _loss_columns(out: Path) -> list[list[str]]:
    return [row[:8] for row in step_rows(out / "metrics" / "image")]  # every column except samples_per_s


def _wait_for_checkpoint(victim: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 60
    while not (out / "ckpt.pt").exists():
        assert victim.poll() is None and time.monotonic() < deadline, "no checkpoint before exit"
        time.sleep(0.02)


def _resume_and_compare(reference: subprocess.Popen, straight: Path, interrupted: Path) -> None:
    """Resume the interrupted run to the end: the same weights and step log as the uninterrupted one."""
    _finish(_start(interrupted, "--resume"))
    _finish(reference)
    a = torch.load(straight / "weights-rank0.pt", weights_only=True)
    b = torch.load(interrupted / "weights-rank0.pt", weights_only=True)
    assert a.keys() == b.keys() and any(k.startswith("teacher.") for k in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert _loss_columns(interrupted) == _loss_columns(straight)


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_weights(tmp_path) -> None:
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    reference = _start(straight)
    # 0.25 s per update: the first checkpoint (step 4) lands about 1 s before the end of step 8.
    victim = _start(crashed, "--step-delay", "0.25")
    _wait_for_checkpoint(victim, crashed)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not (crashed / "weights-rank0.pt").exists()  # it really died mid-way
    killed_at = torch.load(crashed / "ckpt.pt", weights_only=True)["step"]
    assert 0 < killed_at < STEPS

    _resume_and_compare(reference, straight, crashed)
    # Health figures whose window spans the crash (first_rel_loss from step 1, means over the run).
    assert _summary(crashed) == _summary(straight) and _summary(straight)["final_rel_loss"] is not None


@pytest.mark.slow
def test_sigterm_saves_after_the_current_step_and_the_run_resumes_to_identical_weights(tmp_path) -> None:
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    reference = _start(straight)
    victim = _start(stopped, "--step-delay", "0.25")
    _wait_for_checkpoint(victim, stopped)
    time.sleep(0.3)  # past step 4: at least one update more before the signal lands
    victim.send_signal(signal.SIGTERM)
    output, _ = victim.communicate(timeout=30)
    assert victim.returncode == 2 and "stopped by SIGTERM after step" in output, output
    saved_at = torch.load(stopped / "ckpt.pt", weights_only=True)["step"]
    assert EVERY < saved_at < STEPS and f"after step {saved_at} of {STEPS}" in output  # not the periodic one

    _resume_and_compare(reference, straight, stopped)

