"""End to end: the whole pipeline (data -> validation -> pretraining -> evaluation -> report) through
real `dvc repro` in a temporary git repository, on a reduced profile of the embedded default.

Checks the data stages' outputs, that every metrics file and the report appear, that a second
`dvc repro` does nothing, and that re-running pretraining and evaluation from scratch with the same
seed reproduces every metric exactly (CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODALITIES = ("image", "speech", "text")
TIMING_KEYS = {"wall_time_s", "train_time_s", "samples_per_s"}

TINY_DATA = {
    "image": {"train_size": 200, "valid_size": 50, "test_size": 100},
    "text": {"corpus_max_lines": 3000, "task_size": 300, "vocab_size": 500, "tokenizer_sentences": 2000},
    "speech": {"pretrain_languages": ["es"], "pretrain_seconds": 40, "valid_fraction": 0.3,
               "asr_sentences": 4, "real_transcripts": "absent.txt"},
}
TINY_PRETRAIN = {
    "image": {"batch_size": 16, "max_steps": 4, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 2},
    "speech": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1},
    "text": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1},
}
TINY_EVAL = {
    "image": {"n_test": 100, "linear_probe": {"epochs": 5, "n_train": 150},
              "finetune": {"epochs": 1, "n_train": 64, "batch_size": 32}},
    "text": {"n_test": 40, "finetune": {"epochs": 1, "n_train": 64, "batch_size": 16}},
    "speech": {"steps": 4, "batch_size": 4},
}


def _merge(tree: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _ml_metrics(work: Path) -> dict[str, Any]:
    """Every metric the pipeline wrote, minus wall-clock measurements."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMING_KEYS}
        return value

    found = {}
    for modality in MODALITIES:
        for name, path in (("pretrain", work / "metrics" / "pretrain" / modality / "metrics.json"),
                           ("eval", work / "metrics" / "eval" / f"{modality}.json"),
                           ("eval-live", work / "metrics" / "eval" / modality / "metrics.json")):
            found[f"{name}/{modality}"] = strip(json.loads(path.read_text()))
        for plot in sorted((work / "metrics" / "pretrain" / modality / "plots" / "metrics").glob("*.tsv")):
            if plot.stem not in TIMING_KEYS:
                found[f"steps/{modality}/{plot.stem}"] = plot.read_text()
    return found


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    work = tmp_path_factory.mktemp("pipeline") / "repo"
    for package in ("d2v", "pipelines"):
        shutil.copytree(REPO / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    _merge(params, {"data": TINY_DATA, "pretrain": TINY_PRETRAIN, "evaluate": TINY_EVAL})
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    (work / ".gitignore").write_text("/data/\n/models/\n__pycache__/\n/reports/benchmark*\n")
    cached_sdist = REPO / "data" / "cache" / "pypi"
    if cached_sdist.is_dir():  # reuse the hash-verified sdist instead of asking PyPI again
        shutil.copytree(cached_sdist, work / "data" / "cache" / "pypi")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "CI": "true"}
    _run(["git", "init", "-q", "-b", "main"], work, env)
    _run(["dvc", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], work, env)
    log = _run(["dvc", "repro"], work, env)
    return work, env, log


@pytest.mark.slow
def test_every_stage_ran_and_wrote_its_outputs(pipeline: tuple[Path, dict[str, str], str]) -> None:
    work, _, log = pipeline
    for stage in ("validate@image", "pretrain@speech", "evaluate@text", "report"):
        assert f"Running stage '{stage}'" in log
    for modality in MODALITIES:
        validation = json.loads((work / "reports" / "validation" / f"{modality}.json").read_text())
        assert validation["success"] and validation["n_expectations"] > 5
        assert (work / "models" / modality / "checkpoint.pt").is_file()
        summary = json.loads((work / "metrics" / "pretrain" / modality / "metrics.json").read_text())
        assert summary["steps"] == TINY_PRETRAIN[modality]["max_steps"]
        records = json.loads((work / "metrics" / "eval" / f"{modality}.json").read_text())
        main = next(iter(records.values()))
        assert {"pretrained", "random_init", "delta", "n_train", "n_test"} <= set(main)
        assert main["delta"] == pytest.approx(main["pretrained"] - main["random_init"])
    meta = json.loads((work / "data" / "prepared" / "text" / "meta.json").read_text())
    assert meta["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4}
    report = (work / "reports" / "benchmark.md").read_text()
    assert "linear_probe" in report and "Provenance" in report
    assert (work / "reports" / "benchmark.html").stat().st_size > 10_000


@pytest.mark.slow
def test_second_repro_is_a_no_op(pipeline: tuple[Path, dict[str, str], str]) -> None:
    work, env, _ = pipeline
    assert "Running stage" not in _run(["dvc", "repro"], work, env)
    shown = _run(["dvc", "metrics", "show", "--json"], work, env)
    assert "metrics/eval/image/metrics.json" in shown and "metrics/pretrain/text/metrics.json" in shown


@pytest.mark.slow
def test_retraining_from_scratch_reproduces_every_metric(pipeline: tuple[Path, dict[str, str], str]) -> None:
    work, env, _ = pipeline
    first = _ml_metrics(work)
    for modality in MODALITIES:
        shutil.rmtree(work / "models" / modality)
    _run(["dvc", "repro", "--force", "--downstream", "pretrain@image", "pretrain@speech", "pretrain@text"], work, env)
    assert _ml_metrics(work) == first


def _pretrain_outputs(work: Path) -> dict[str, Any]:
    """The image run's summary and step log without timings, and its weights file (named by sha256)."""
    metrics = _ml_metrics(work)
    found = {k: v for k, v in metrics.items() if k == "pretrain/image" or k.startswith("steps/image/")}
    found["weights"] = sorted(p.name for p in (work / "models" / "image").glob("*.safetensors"))
    return found


@pytest.mark.slow
def test_a_killed_dvc_repro_resumes_from_its_checkpoint_to_the_same_bits(
    pipeline: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    import signal

    import torch

    source, env, _ = pipeline
    work = tmp_path / "repo"
    shutil.copytree(source, work, symlinks=True)
    params = yaml.safe_load((work / "params.yaml").read_text())
    steps, every = 60, 10
    _merge(params, {"pretrain": {"image": {"max_steps": steps, "checkpoint_every": every, "log_every": every}}})
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    loss_log = work / "metrics" / "pretrain" / "image" / "plots" / "metrics" / "loss.tsv"
    loss_log.unlink()  # the previous run's log: polled below

    victim = subprocess.Popen(["dvc", "repro", "pretrain@image"], cwd=work, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (loss_log.is_file() and len(loss_log.read_text().splitlines()) > 2 * every + 2):
        assert victim.poll() is None and time.monotonic() < deadline, "the stage ended before it could be killed"
        time.sleep(0.005)
    os.killpg(victim.pid, signal.SIGKILL)  # dvc and the d2v process under it, mid-run
    victim.wait(timeout=30)
    killed_at = torch.load(work / "models" / "image" / "checkpoint.pt", weights_only=True)["step"]
    assert every <= killed_at < steps

    log = _run(["dvc", "repro", "pretrain@image"], work, env)
    assert f"start_step={killed_at}" in log, log[-2000:]
    resumed = _pretrain_outputs(work)
    assert resumed["pretrain/image"]["steps"] == steps

    shutil.rmtree(work / "models" / "image")  # the same stage, uninterrupted
    _run(["dvc", "repro", "--force", "pretrain@image"], work, env)
    assert _pretrain_outputs(work) == resumed


def _experiment(shown: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The `dvc exp show --json` entry of experiment `name` (DVC 3: commits -> experiments -> revs)."""
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                if rev.get("name") == name:
                    return rev
    raise AssertionError(f"experiment {name!r} not in dvc exp show: {json.dumps(shown)[:2000]}")


@pytest.mark.slow
def test_a_queued_experiment_runs_and_dvc_shows_its_metrics_and_plots(pipeline: tuple[Path, dict[str, str], str]) -> None:
    # Last in this module: it commits the baseline (queued experiments start from a commit).
    work, env, _ = pipeline
    _run(["git", "add", "-A"], work, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "baseline"], work, env)
    steps = TINY_PRETRAIN["image"]["max_steps"] + 2
    _run(["dvc", "exp", "run", "--queue", "-n", "longer", "-S", f"pretrain.image.max_steps={steps}"], work, env)
    _run(["dvc", "queue", "start", "-j", "1"], work, env)
    deadline = time.monotonic() + 600
    while True:
        status = _run(["dvc", "queue", "status"], work, env)
        if "Success" in status or "Failed" in status:
            break
        assert time.monotonic() < deadline, f"the queued experiment did not finish:\n{status}"
        time.sleep(2)
    assert "Success" in status, _run(["dvc", "queue", "logs", "longer"], work, env)
    _run(["dvc", "queue", "stop", "--kill"], work, env)

    metrics = _experiment(json.loads(_run(["dvc", "exp", "show", "--json"], work, env)), "longer")["data"]["metrics"]
    assert metrics["metrics/pretrain/image/metrics.json"]["data"]["steps"] == steps
    probe = metrics["metrics/eval/image/metrics.json"]["data"]["linear_probe"]
    assert {"pretrained", "random_init", "delta"} <= set(probe)
    assert metrics["metrics/pretrain/text/metrics.json"]["data"]["steps"] == TINY_PRETRAIN["text"]["max_steps"]
    diff = json.loads(_run(["dvc", "plots", "diff", "HEAD", "longer", "--json"], work, env))
    loss = diff["data"]["metrics/pretrain/image/plots/metrics/loss.tsv"]
    revisions = {row["rev"] for entry in loss for row in entry["content"]["data"]["values"]}
    assert {"HEAD", "longer"} <= revisions
