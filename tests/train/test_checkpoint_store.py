"""pretrain.checkpoint_store: checkpoints mirrored to S3 (moto over HTTP) or a directory, and
fetched back by --resume on a pod whose disk is gone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from d2v.artifacts.backend import open_backend
from d2v.artifacts.config import ArtifactsConfig
from d2v.config import load_params
from d2v.errors import ConfigError, D2VError
from d2v.train._selftest import FINGERPRINT, StandInModel, SyntheticDataset, tiny_config
from d2v.train.checkpoint import CheckpointError, load_checkpoint
from d2v.train.checkpoint_mirror import CheckpointMirror
from d2v.train.checkpoint_store import CheckpointStore, resolve_checkpoint_store
from d2v.train.distributed import DistEnv
from d2v.train.loop import RunPaths, pretrain

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
RUN = "ab" * 32  # a run identity (64 hex digits)
OTHER_RUN = "cd" * 32
PREFIX = f"checkpoints/image/{RUN[:16]}"


@pytest.fixture(params=["file", "s3"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactsConfig:
    if request.param == "file":
        return ArtifactsConfig(uri=f"file://{tmp_path / 'store'}")
    return request.getfixturevalue("fast_retry_artifacts_config")  # s3://d2v-test/d2v on moto


def _train(pod: Path, store: ArtifactsConfig | None, *, run_id: str | None = RUN, resume: bool = False,
           **cfg: object) -> dict:
    torch.manual_seed(0)
    return pretrain(
        StandInModel(), SyntheticDataset(40), tiny_config(**cfg), modality="image", fingerprint=FINGERPRINT,
        seed=0, paths=RunPaths(pod / "ckpt.pt", pod / "metrics"), env=CPU, resume=resume, run_id=run_id,
        checkpoint_store=store,
    )


def _latest(cfg: ArtifactsConfig, run: str = RUN) -> dict:
    return json.loads(open_backend(cfg).get_bytes(f"checkpoints/image/{run[:16]}/latest.json"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


def test_the_setting_names_a_uri_or_the_artifact_store() -> None:
    artifacts = ArtifactsConfig(uri="s3://runs/d2v", endpoint_url="http://minio:9000")
    assert resolve_checkpoint_store(None, artifacts) is None
    assert resolve_checkpoint_store("artifacts", artifacts) == artifacts
    # Another location, with the artifact store's endpoint, credentials and retries.
    assert resolve_checkpoint_store("s3://ckpt/team", artifacts) == replace(artifacts, uri="s3://ckpt/team")
    for bad in ("ckpt/team", "s3://", "gs://bucket/x"):
        with pytest.raises(ConfigError, match=rf"pretrain\.checkpoint_store: '{bad}': expected null, 'artifacts'"):
            resolve_checkpoint_store(bad, artifacts)


def test_params_yaml_names_the_key_of_a_store_it_cannot_use(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    assert load_params(repo / "params.yaml").pretrain.checkpoint_store is None  # local only by default
    tree = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    tree["pretrain"]["checkpoint_store"] = "bucket/checkpoints"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pretrain\.checkpoint_store: 'bucket/checkpoints': expected null"):
        load_params(tmp_path / "params.yaml")


def test_a_store_needs_the_run_identity(tmp_path: Path) -> None:
    with pytest.raises(D2VError, match=r"checkpoint store needs the run identity"):
        _train(tmp_path, ArtifactsConfig(uri=f"file://{tmp_path / 'store'}"), run_id=None, max_steps=1)


# --------------------------------------------------------------------------------------------------
# Mirroring
# --------------------------------------------------------------------------------------------------


def test_every_checkpoint_is_mirrored_with_its_sha256_and_the_last_keep_last_kept(
    store_config: ArtifactsConfig, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pod = tmp_path / "pod"
    _train(pod, store_config, max_steps=12, checkpoint_every=4, keep_last=2)
    backend = open_backend(store_config)
    latest = _latest(store_config)
    ckpt, weights = latest["checkpoint"], latest["weights"]
    local_ckpt = (pod / "ckpt.pt").read_bytes()
    local_weights = (pod / weights["name"]).read_bytes()
    assert (latest["run"], latest["modality"], latest["step"], latest["final"]) == (RUN, "image", 12, True)
    assert ckpt == {"key": f"step00000012/ckpt.{_sha(local_ckpt)[:16]}.pt", "name": "ckpt.pt",
                    "size": len(local_ckpt), "sha256": _sha(local_ckpt)}
    assert weights["key"] == f"step00000012/{weights['name']}" and weights["sha256"] == _sha(local_weights)
    assert _sha(backend.get_bytes(f"{PREFIX}/{ckpt['key']}")) == ckpt["sha256"]
    assert _sha(backend.get_bytes(f"{PREFIX}/{weights['key']}")) == weights["sha256"]
    err = capfd.readouterr().err
    url = f"{backend.uri}/{PREFIX}"
    # A save that comes before the previous upload has started replaces it (by design: the mirror
    # never falls behind the run). On a loaded machine S3 uploads can be that slow, and the log
    # says so; every other step is reported mirrored.
    replaced = [s for s in (4, 8) if f"checkpoint step {s} not mirrored: step " in err]
    for step in (4, 8):
        if step not in replaced:
            assert f"checkpoint step {step} mirrored to {url}/step{step:08d} in " in err
    assert f"final model step 12 mirrored to {url}/step00000012 in " in err
    # keep_last 2: the last two mirrored steps (8 and 12 unless 8 was replaced), each with its manifest.
    kept = [s for s in (4, 8, 12) if s not in replaced][-2:]
    keys = [info.key[len(PREFIX) + 1:] for info in backend.list(f"{PREFIX}/")]
    assert keys == sorted(["latest.json", *(f"step{s:08d}/{n}" for s in kept for n in _step_names(backend, s))])
    assert json.loads(backend.get_bytes(f"{PREFIX}/step00000012/manifest.json")) == latest
    assert not [p for p in pod.iterdir() if p.name.startswith(".")]  # no staging directory left


def _step_names(backend, step: int) -> list[str]:  # noqa: ANN001
    manifest = json.loads(backend.get_bytes(f"{PREFIX}/step{step:08d}/manifest.json"))
    return ["manifest.json", manifest["checkpoint"]["key"][13:], manifest["weights"]["name"]]


def test_the_store_pointer_never_moves_back_within_a_run(tmp_path: Path) -> None:
    pod, store = tmp_path / "pod", ArtifactsConfig(uri=f"file://{tmp_path / 'store'}")
    _train(pod, store, max_steps=8, checkpoint_every=4, keep_last=2)
    checkpoints = CheckpointStore.open(store, "image", RUN)
    # A process that missed the store's step 8 (the store was down at its resume) saves step 4 again.
    copy = pod / "ckpt-step00000004.pt"
    weights = pod / torch.load(copy, weights_only=True)["weights"]["file"]
    assert checkpoints.upload(copy, weights, step=4, final=False, keep_last=2) is None
    assert _latest(store)["step"] == 8


class _SlowStore:
    """Uploads block until released; records which steps were uploaded."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.steps: list[int] = []

    def url(self, key: str = "") -> str:
        return "mem://store" + (f"/{key}" if key else "")

    def upload(self, checkpoint: Path, weights: Path, *, step: int, final: bool, keep_last: int):  # noqa: ANN201
        assert checkpoint.read_bytes() == f"ckpt {step}".encode()  # the snapshot, not the live file
        self.started.set()
        self.release.wait(timeout=10)
        self.steps.append(step)
        return None


def test_only_the_newest_waiting_checkpoint_is_uploaded_and_close_waits_for_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = _SlowStore()
    path = tmp_path / "ckpt.pt"
    mirror = CheckpointMirror(store, path, keep_last=1)  # type: ignore[arg-type]
    for step in (1, 2, 3):
        (tmp_path / "next").write_bytes(f"ckpt {step}".encode())
        os.replace(tmp_path / "next", path)  # as a save does: a new file under the old name
        weights = tmp_path / f"ckpt.{step:016x}.safetensors"
        weights.write_bytes(b"w")
        mirror.submit(weights, step, final=step == 3)
        if step == 1:
            assert store.started.wait(timeout=10)  # step 1 in flight: 2 waits, then 3 replaces it
    store.release.set()
    mirror.close()
    assert store.steps == [1, 3]
    assert "checkpoint step 2 not mirrored: step 3 replaced it" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --------------------------------------------------------------------------------------------------
# Resume from the store
# --------------------------------------------------------------------------------------------------

SELFTEST = [sys.executable, "-m", "d2v.train._selftest"]
STEPS, EVERY = 12, 4


def _selftest(out: Path, *extra: str) -> subprocess.Popen:
    args = [*SELFTEST, str(out), "--steps", str(STEPS), "--checkpoint-every", str(EVERY), *extra]
    env = {**os.environ, "CI": "true", "OMP_NUM_THREADS": "1"}  # AWS_*: aws_env's dummy credentials
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    return output


@pytest.mark.slow
def test_a_killed_run_resumes_on_a_new_pod_from_s3_to_identical_weights(
    tmp_path: Path, fast_retry_artifacts_config: ArtifactsConfig
) -> None:
    cfg = fast_retry_artifacts_config
    store = ["--run-id", RUN, "--checkpoint-store", cfg.uri, "--endpoint-url", str(cfg.endpoint_url)]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    reference = _selftest(straight)  # uninterrupted, no store
    victim = _selftest(crashed, "--step-delay", "0.25", *store)
    backend, deadline = open_backend(cfg), time.monotonic() + 60
    while not backend.exists(f"{PREFIX}/latest.json"):  # the first checkpoint reached the store
        assert victim.poll() is None and time.monotonic() < deadline, "no checkpoint mirrored before exit"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = _latest(cfg)["step"]
    assert 0 < killed_at < STEPS

    shutil.rmtree(crashed)  # a new pod: nothing of the first one's disk
    output = _finish(_selftest(crashed, "--resume", *store))
    assert f"resuming from {cfg.uri}/{PREFIX}/step{killed_at:08d} step {killed_at}" in output, output
    assert f"start_step={killed_at}" in output
    _finish(reference)
    a = torch.load(straight / "weights-rank0.pt", weights_only=True)
    b = torch.load(crashed / "weights-rank0.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The final weights files are named by their sha256: byte-identical.
    assert sorted(p.name for p in straight.glob("*.safetensors")) == sorted(p.name for p in crashed.glob("*.safetensors"))
    assert _latest(cfg)["step"] == STEPS and _latest(cfg)["final"]


def test_a_run_of_another_identity_does_not_use_the_stored_checkpoint(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = ArtifactsConfig(uri=f"file://{tmp_path / 'store'}")
    _train(tmp_path / "first", store, max_steps=8)
    capfd.readouterr()
    summary = _train(tmp_path / "second", store, run_id=OTHER_RUN, resume=True, max_steps=8)
    err = capfd.readouterr().err
    assert "start_step=0" in err and "resuming from" not in err and summary["steps"] == 8
    assert _latest(store)["step"] == 8 and _latest(store, OTHER_RUN)["run"] == OTHER_RUN


def test_resume_takes_whichever_of_local_and_stored_has_more_steps(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    pod, store = tmp_path / "pod", ArtifactsConfig(uri=f"file://{tmp_path / 'store'}")
    _train(pod, store, max_steps=12, keep_last=3)  # local and stored: steps 4, 8, 12
    backend = open_backend(store)
    # The local checkpoint is older (the pod kept step 8): the store's step 12 replaces it.
    shutil.copy(pod / "ckpt-step00000008.pt", pod / "ckpt.pt")
    capfd.readouterr()
    assert _train(pod, store, resume=True, max_steps=12)["steps"] == 12
    err = capfd.readouterr().err
    assert f"resuming from {backend.uri}/{PREFIX}/step00000012 step 12 (the local one is at step 8;" in err
    assert load_checkpoint(pod / "ckpt.pt")["step"] == 12
    # The store lags (its latest says step 8): the local step 12 is kept, nothing is downloaded.
    backend.put_bytes(f"{PREFIX}/latest.json", backend.get_bytes(f"{PREFIX}/step00000008/manifest.json"))
    _train(pod, store, resume=True, max_steps=12)
    err = capfd.readouterr().err
    assert "(step 12) is not older than" in err and f"resuming from {backend.uri}" not in err
    assert load_checkpoint(pod / "ckpt.pt")["step"] == 12


def test_an_unreachable_store_is_a_warning_and_training_goes_on(
    tmp_path: Path, fast_retry_artifacts_config: ArtifactsConfig, moto_server_control,  # noqa: ANN001
    capfd: pytest.CaptureFixture[str],
) -> None:
    moto_server_control.stop()  # connections refused, as from a dead endpoint
    summary = _train(tmp_path / "pod", fast_retry_artifacts_config, resume=True, max_steps=8)
    assert summary["steps"] == 8 and load_checkpoint(tmp_path / "pod" / "ckpt.pt")["step"] == 8
    err = capfd.readouterr().err
    url = f"{fast_retry_artifacts_config.uri}/{PREFIX}"
    assert f"warning: cannot read {url}/latest.json: TransientStoreError" in err
    assert f"warning: checkpoint step 4 not mirrored to {url}: TransientStoreError" in err
    assert "training continues, the local checkpoint" in err
    assert f"warning: the final model (step 8) is not on {url}; it is only at {tmp_path / 'pod' / 'ckpt.pt'}" in err


def test_a_corrupt_stored_checkpoint_is_an_error_naming_the_object_and_both_hashes(
    store_config: ArtifactsConfig, tmp_path: Path
) -> None:
    _train(tmp_path / "first", store_config, max_steps=4)
    backend = open_backend(store_config)
    weights = _latest(store_config)["weights"]
    backend.put_bytes(f"{PREFIX}/{weights['key']}", b"not the weights")  # bit rot, a bad copy, ...
    pod = tmp_path / "second"
    with pytest.raises(CheckpointError) as caught:
        _train(pod, store_config, resume=True, max_steps=4)
    message = str(caught.value)
    assert f"{backend.uri}/{PREFIX}/{weights['key']}: sha256 {_sha(b'not the weights')} does not match " \
           f"{weights['sha256']} recorded in {backend.uri}/{PREFIX}/latest.json" in message
    assert not pod.exists() or not list(pod.iterdir())  # nothing half-downloaded stays behind
