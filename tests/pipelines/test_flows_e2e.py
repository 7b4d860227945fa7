"""End to end on 127.0.0.1: a Prefect server, a process worker, prefect.yaml deployed, S3 = moto.

The deployments run the real stages (every one through `dvc repro`: data, pretraining, evaluation
when dvc.yaml has it) on the tiny profile in a temporary git copy of the repository, and publish to moto over HTTP.
Only the image modality runs, to keep the module near two minutes on 2 cores. The `report` stage
is left out: it reads every modality's metrics, so it would pretrain all three.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from moto_support import TEST_BUCKET, MotoServerControl, free_port
from flow_stack import make_repo_copy, prefect_env, run, start_process, stop_process, wait_healthy

PREFIX = "d2v"


@dataclass(frozen=True)
class Stack:
    repo: Path
    env: dict[str, str]
    stages: list[str]


def _s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          _moto_server_for_session: MotoServerControl) -> Iterator[Stack]:
    endpoint = _moto_server_for_session.url
    tmp = tmp_path_factory.mktemp("flows")
    repo = make_repo_copy(tmp / "repo", f"s3://{TEST_BUCKET}/{PREFIX}", endpoint)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "D2V_ROOT": str(repo)}
    env = prefect_env(tmp / "prefect-home", api, aws)
    server = start_process(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                           repo, env, tmp / "server.log")
    worker = None
    try:
        wait_healthy(api, server, tmp / "server.log")
        run(["prefect", "work-pool", "create", "d2v-process", "--type", "process"], repo, env)
        run(["bash", "infra/prefect/gpu-pool.sh"], repo, env)  # the GPU pool prefect.yaml names
        run(["prefect", "--no-prompt", "deploy", "--all"], repo, env)
        worker = start_process(["prefect", "worker", "start", "--pool", "d2v-process", "--type", "process"],
                               repo, env, tmp / "worker.log")
        available = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
        yield Stack(repo, env, [s for s in ("pretrain", "evaluate") if s in available])
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(server)


def run_deployment(stack: Stack, name: str, params: dict) -> str:
    done = subprocess.run(["prefect", "deployment", "run", name, "--params", json.dumps(params),
                           "--watch", "--watch-timeout", "600"], cwd=stack.repo, env=stack.env,
                          capture_output=True, text=True, timeout=660)
    out = done.stdout + done.stderr
    if done.returncode != 0 or "Completed" not in out:
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)
        logs = run(["prefect", "flow-run", "logs", run_id.group(1)], stack.repo, stack.env) if run_id else ""
        pytest.fail(f"{name} did not complete:\n{out[-2000:]}\nflow run logs:\n{logs[-6000:]}")
    return out


def verified_manifests(endpoint: str) -> dict[str, dict]:
    """Every manifest in the bucket, after checking each listed object's size and sha256."""
    s3 = _s3(endpoint)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=TEST_BUCKET, Prefix=PREFIX)
            for o in page.get("Contents", [])]
    manifests = {}
    for key in (k for k in keys if k.endswith("/manifest.json")):
        manifest = json.loads(s3.get_object(Bucket=TEST_BUCKET, Key=key)["Body"].read())
        run_prefix = key.removesuffix("manifest.json")
        for entry in manifest["files"]:
            body = s3.get_object(Bucket=TEST_BUCKET, Key=run_prefix + entry["path"])["Body"].read()
            assert len(body) == entry["size"] and hashlib.sha256(body).hexdigest() == entry["sha256"], entry
        assert {k.removeprefix(run_prefix) for k in keys if k.startswith(run_prefix)} == \
            {e["path"] for e in manifest["files"]} | {"manifest.json"}
        manifests[manifest["run_id"]] = manifest
    return manifests


@pytest.mark.slow
def test_benchmark_deployment_publishes_a_verified_run_to_s3(stack: Stack, moto_server: str, s3_bucket: str) -> None:
    params = {"modalities": ["image"], "data_stages": ["validate"], "stages": stack.stages,
              "run_id": "bench-e2e"}
    run_deployment(stack, "benchmark/benchmark", params)

    manifests = verified_manifests(moto_server)
    assert list(manifests) == ["bench-e2e-image"]
    manifest = manifests["bench-e2e-image"]
    paths = {e["path"] for e in manifest["files"]}
    assert {"models/image/checkpoint.pt", "metrics/pretrain/image/metrics.json", "reports/validation/image.json",
            "reports/validation/data_docs/image/index.html"} <= paths
    assert any(p.startswith("models/image/checkpoint.") and p.endswith(".safetensors") for p in paths)
    if "evaluate" in stack.stages:
        assert {"metrics/eval/image.json", "metrics/eval/image/metrics.json"} <= paths
    assert manifest["modality"] == "image" and manifest["extra"]["flow"] == "benchmark"
    assert manifest["extra"]["data_version"].endswith(".dir")
    assert manifest["provenance"]["git_commit"] and manifest["provenance"]["dvc_lock_sha256"]
    latest = json.loads(_s3(moto_server).get_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/pointers/image/latest.json")["Body"].read())
    assert latest["run_id"] == "bench-e2e-image"
    report = run(["prefect", "artifact", "inspect", "d2v-benchmark-report"], stack.repo, stack.env)
    assert "markdown" in report and "bench-e2e-image" in report


def _outputs_state(repo: Path) -> dict[str, tuple[int, str]]:
    """(mtime in ns, sha256) of the image model's outputs and of dvc.lock."""
    paths = [repo / "models" / "image" / "checkpoint.pt", repo / "metrics" / "pretrain" / "image" / "metrics.json",
             repo / "metrics" / "eval" / "image.json", repo / "dvc.lock"]
    return {p.relative_to(repo).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in paths if p.is_file()}


@pytest.mark.slow
def test_a_second_benchmark_run_retrains_nothing(stack: Stack, moto_server: str, s3_bucket: str) -> None:
    """The flows run stages through `dvc repro`: what is up to date is skipped, nothing is re-recorded."""
    params = {"modalities": ["image"], "data_stages": ["validate"], "stages": stack.stages, "publish": False}
    run_deployment(stack, "benchmark/benchmark", params)  # up to date afterwards (quick if already so)
    status = run(["dvc", "status", *[f"{s}@image" for s in stack.stages]], stack.repo, stack.env)
    assert "up to date" in status, status
    before = _outputs_state(stack.repo)
    assert "models/image/checkpoint.pt" in before

    run_deployment(stack, "benchmark/benchmark", params)
    assert _outputs_state(stack.repo) == before  # a retrained model would have a new mtime (and bytes)


@pytest.mark.slow
def test_retrain_deployment_keeps_a_better_champion(stack: Stack, moto_server: str, s3_bucket: str) -> None:
    """The champion holds an unbeatable score on the candidate's metric: the run is published, not promoted."""
    from d2v.artifacts.config import ArtifactsConfig
    from d2v.artifacts.store import ArtifactStore, Metric

    store = ArtifactStore.from_config(ArtifactsConfig(uri=f"s3://{TEST_BUCKET}/{PREFIX}", endpoint_url=moto_server))
    metric = Metric("linear_probe/top1", 2.0) if "evaluate" in stack.stages else Metric("pretrain/final_loss_avg", 0.0)
    champion_file = stack.repo.parent / "champion.txt"
    champion_file.write_text("the reigning champion\n")
    store.publish({"note.txt": champion_file}, run_id="champion-0", modality="image")
    store.promote("champion-0", "image", metric)

    params = {"modalities": ["image"], "data_stages": ["validate"], "stages": stack.stages,
              "refresh": True, "refresh_stages": ["download"], "warm_start": False, "run_id": "retrain-e2e"}
    run_deployment(stack, "retrain/retrain", params)

    manifests = verified_manifests(moto_server)
    assert set(manifests) == {"champion-0", "retrain-e2e-image"}
    extra = manifests["retrain-e2e-image"]["extra"]
    assert extra["decision"] == "kept_champion" and "worse than" in extra["reason"]
    assert extra["champion"] == {"metric": metric.name, "value": metric.value}
    assert extra["candidate"]["metric"] == metric.name and extra["champion_run_id"] == "champion-0"
    assert extra["champion_rescored"] is False  # its run holds no checkpoint: judged on the recorded score
    champion = store.pointer("image", "champion")
    assert champion is not None and champion.run_id == "champion-0"
    assert store.pointer("image", "latest").run_id == "retrain-e2e-image"


@pytest.mark.slow
def test_retrain_rescores_the_champion_on_todays_data(stack: Stack, moto_server: str, s3_bucket: str) -> None:
    """A champion whose recorded score (on the data of its day) is unbeatable, but which is the very
    model the pipeline holds: re-scored by `d2v evaluate` on the same data it ties the candidate, so
    the candidate is promoted and the manifest records both the recorded and the re-scored score."""
    if "evaluate" not in stack.stages:
        pytest.skip("the evaluate stage is not in this checkout's dvc.yaml: no score to re-measure")
    from d2v.artifacts.config import ArtifactsConfig
    from d2v.artifacts.store import ArtifactStore, Metric

    store = ArtifactStore.from_config(ArtifactsConfig(uri=f"s3://{TEST_BUCKET}/{PREFIX}", endpoint_url=moto_server))
    models = {p.relative_to(stack.repo).as_posix(): p for p in (stack.repo / "models" / "image").iterdir()}
    assert "models/image/checkpoint.pt" in models  # left by the benchmark runs above
    store.publish(models, run_id="champion-old-data", modality="image")
    store.promote("champion-old-data", "image", Metric("linear_probe/top1", 2.0))

    params = {"modalities": ["image"], "data_stages": ["validate"], "stages": stack.stages,
              "refresh": True, "refresh_stages": ["download"], "warm_start": False, "run_id": "rescore-e2e"}
    run_deployment(stack, "retrain/retrain", params)

    extra = verified_manifests(moto_server)["rescore-e2e-image"]["extra"]
    assert extra["champion_rescored"] is True and extra["champion_recorded"]["value"] == 2.0
    assert extra["champion"]["value"] == extra["candidate"]["value"]  # same weights, data and seed
    assert extra["decision"] == "promoted"
    assert store.pointer("image", "champion").run_id == "rescore-e2e-image"


def _descendants_running(marker: str) -> list[int]:
    """Pids of this process's descendants whose command line contains `marker`, deepest first.

    Read from /proc rather than `ps`, whose output is cut at the terminal width ($COLUMNS) when it
    is piped: a long venv path then hides the marker in the Python process's command line, only the
    short `/bin/sh -c ...` parent gets killed, and the orphaned trainer runs on (seen on CI)."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended while being read
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces
        commands[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = [(pid, 0) for pid in children.get(os.getpid(), [])]
    depth: dict[int, int] = {}
    while todo:
        pid, level = todo.pop()
        todo += [(child, level + 1) for child in children.get(pid, [])]
        if marker in commands.get(pid, ""):
            found.append(pid)
            depth[pid] = level
    return sorted(found, key=lambda pid: -depth[pid])  # the trainer before the shell that started it


def _run_image_outputs(repo: Path) -> dict[str, object]:
    """What an image pretraining run leaves that must not depend on being interrupted."""
    model_dir = repo / "models" / "image"
    summary = json.loads((repo / "metrics" / "pretrain" / "image" / "metrics.json").read_text())
    return {
        "weights": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.glob("*.safetensors")},
        "loss": (repo / "metrics" / "pretrain" / "image" / "plots" / "metrics" / "loss.tsv").read_text(),
        "summary": {k: v for k, v in summary.items() if not k.endswith(("_s", "time_s", "samples_per_s"))},
    }


@pytest.mark.slow
def test_a_prefect_retry_resumes_a_killed_pretraining_to_the_same_bits(stack: Stack, tmp_path: Path) -> None:
    """The pretrain flow's `dvc repro` task is retried by Prefect after its d2v process is SIGKILLed
    mid-run; the retry continues from the checkpoint and ends where an uninterrupted run ends."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from pipelines.flows.pretrain import pretrain_flow

    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(stack.repo), str(repo)], check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    steps, every = 40, 10
    params["pretrain"]["image"].update({"max_steps": steps, "checkpoint_every": every, "log_every": every})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    loss_log = repo / "metrics" / "pretrain" / "image" / "plots" / "metrics" / "loss.tsv"
    loss_log.unlink(missing_ok=True)
    killed: list[int] = []

    def kill_once_mid_run() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if loss_log.is_file() and len(loss_log.read_text().splitlines()) > every + 2:
                for pid in _descendants_running("d2v pretrain image"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                if killed:
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_once_mid_run, daemon=True)
    lines: list[str] = []  # the task's streamed stage output, as the Prefect run logger emits it

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    collect = Collect(logging.INFO)
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addHandler(collect)
    env_keys = {k: v for k, v in stack.env.items() if k.startswith(("AWS_", "D2V_"))}
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys | {"D2V_ROOT": str(repo)})
    try:
        with temporary_settings({PREFECT_API_URL: stack.env["PREFECT_API_URL"],
                                 PREFECT_HOME: stack.env["PREFECT_HOME"]}):
            killer.start()
            summary = pretrain_flow(modality="image", root=str(repo))
    finally:
        task_logger.removeHandler(collect)
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    killer.join(timeout=5)
    assert killed, "the pretraining ended before it could be killed"
    # One start line per attempt (the failure's own message quotes the first attempt's lines too).
    starts = [int(m.group(1)) for line in lines for m in [re.match(r"\[pretrain image\] device=.* start_step=(\d+)$", line)] if m]
    assert starts[0] == 0 and len(starts) == 2 and every <= starts[1] < steps, starts  # the retry resumed
    assert summary["steps"] == steps
    resumed = _run_image_outputs(repo)

    import torch

    checkpoint = torch.load(repo / "models" / "image" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == steps
    shutil.rmtree(repo / "models" / "image")  # the same stage, uninterrupted
    run(["dvc", "repro", "--force", "pretrain@image"], repo, stack.env)
    assert _run_image_outputs(repo) == resumed
