"""Flow building blocks without a Prefect server: decisions, stage lists, `dvc repro`, publishing."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.store import ArtifactStore, Metric
from d2v.errors import D2VError
from d2v.layout import Layout
from d2v.train.launch import INIT_CHECKPOINT_ENV, NNODES_ENV, NPROC_ENV, Launch, Rendezvous
from pipelines.dvc_stages import expand_stages, prepared_data_versions, repro_command, reproduced_stages
from pipelines.flows.commands import StageFailed, run_streaming
from pipelines.flows.decision import Score, decide, primary_eval_score
from pipelines.flows.pretrain import _fixed_nodes, apply_run_profile, stage_env
from pipelines.flows.publish import fetch_champion_checkpoint, files_to_publish, store_config
from pipelines.flows.retrain import judge_and_publish

REPO = Path(__file__).resolve().parents[2]
STAGES = ["download@image", "download@text", "tokenize", "pretrain@image", "pretrain@text", "report"]


# ------------------------------------------------------------------------------------- decisions


@pytest.mark.parametrize(("candidate", "champion", "promote"), [
    (Score("linear_probe/top1", 0.81, True), Score("linear_probe/top1", 0.80), True),
    (Score("linear_probe/top1", 0.79, True), Score("linear_probe/top1", 0.80), False),
    (Score("linear_probe/top1", 0.80, True), Score("linear_probe/top1", 0.80), True),   # tie: newer data
    (Score("ctc/wer", 0.30, False), Score("ctc/wer", 0.35), True),                   # lower is better
    (Score("ctc/wer", 0.40, False), Score("ctc/wer", 0.35), False),
    (Score("ctc/wer", 0.40), Score("ctc/wer", 0.35), False),                         # direction by name
    (Score("linear_probe/top1", 0.9, True), None, True),                              # no champion
    (Score("linear_probe/top1", math.nan, True), None, False),
    (Score("finetune/top1", 0.99, True), Score("linear_probe/top1", 0.5), False),      # metric changed
])
def test_decide(candidate: Score, champion: Score | None, promote: bool) -> None:
    decision = decide(candidate, champion)
    assert decision.promote is promote
    record = decision.as_record()
    assert record["decision"] == ("promoted" if promote else "kept_champion")
    assert record["candidate"] == {"metric": candidate.name, "value": candidate.value} or math.isnan(candidate.value)


def test_primary_eval_score_is_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "speech.json"
    path.write_text(json.dumps({"ctc": {"task": "ctc", "metric": "wer", "pretrained": 0.4, "random_init": 0.9,
                                        "higher_is_better": False},
                                "ctc_cer": {"task": "ctc_cer", "metric": "cer", "pretrained": 0.2}}))
    assert primary_eval_score(path) == Score("ctc/wer", 0.4, False)
    path.write_text("{}")
    with pytest.raises(D2VError, match="speech.json"):
        primary_eval_score(path)


# ----------------------------------------------------------------------------------- DVC stages


def test_expand_stages_instances_plain_and_unknown() -> None:
    assert expand_stages(["download", "tokenize", "pretrain", "report"], ["image"], STAGES) == [
        "download@image", "tokenize", "pretrain@image", "report"]
    assert expand_stages(["pretrain@text"], ["image"], STAGES) == ["pretrain@text"]
    with pytest.raises(D2VError, match="no stage 'evaluate'"):
        expand_stages(["evaluate"], ["image"], STAGES)


def test_repro_command_and_the_stages_it_ran() -> None:
    assert repro_command(["pretrain@image"]) == ["dvc", "repro", "pretrain@image"]
    assert repro_command(["download@text"], force=True, single_item=True) == [
        "dvc", "repro", "--force", "--single-item", "download@text"]
    output = ["Stage 'validate@image' didn't change, skipping", "Running stage 'pretrain@image':",
              "> d2v pretrain image", "Updating lock file 'dvc.lock'", "Running stage 'evaluate@image':"]
    assert reproduced_stages(output) == ["pretrain@image", "evaluate@image"]
    assert reproduced_stages(["Stage 'pretrain@image' didn't change, skipping",
                              "Data and pipelines are up to date."]) == []


def test_prepared_data_versions_from_dvc_lock(tmp_path: Path) -> None:
    lock = {"schema": "2.0", "stages": {
        "prepare@image": {"cmd": "x", "outs": [{"path": "data/prepared/image", "md5": "abc.dir"}]},
        "tokenize": {"cmd": "y", "outs": [{"path": "data/prepared/text", "md5": "def.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    layout = Layout.from_params(REPO / "params.yaml")
    assert prepared_data_versions(tmp_path, layout, ["image", "text", "speech"]) == {
        "image": "abc.dir", "text": "def.dir"}


def test_decision_imports_no_prefect() -> None:
    """The champion/challenger decision is unit-tested and reused without a Prefect install."""
    code = "import sys, pipelines.flows.decision; print('prefect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# ------------------------------------------------------------------------- the pretrain stage's env


def test_stage_env_hands_processes_rendezvous_and_warm_start_to_d2v_pretrain(tmp_path: Path) -> None:
    launch = Launch(4, Rendezvous("2", None, "c10d", "node0:29400", "job7"))
    env = stage_env(launch, str(tmp_path / "champion.pt"))
    assert env[NPROC_ENV] == "4" and env[NNODES_ENV] == "2"
    assert env[INIT_CHECKPOINT_ENV] == str((tmp_path / "champion.pt").resolve())
    assert Launch.from_env(env) == launch  # what `d2v pretrain` reads back under `dvc repro`
    assert INIT_CHECKPOINT_ENV not in stage_env(Launch(), None)


def test_a_profile_is_written_for_the_launched_world_size(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    changed = apply_run_profile.fn(str(tmp_path), "image-base", "image", 8 * _fixed_nodes("1"))
    assert "pretrain.image.grad_accum" in changed  # 16 released GPUs on 8: two micro-batches per update
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["pretrain"]["image"]["grad_accum"] == 2
    with pytest.raises(D2VError, match="profile 'text-base' is for text, but this flow pretrains image"):
        apply_run_profile.fn(str(tmp_path), "text-base", "image", 8)
    with pytest.raises(D2VError, match="nnodes '1:4': a profile needs a fixed node count"):
        _fixed_nodes("1:4")


def test_run_streaming_hands_over_every_line_and_reports_failures(tmp_path: Path) -> None:
    lines: list[str] = []
    run_streaming(["bash", "-c", "echo one; echo two >&2"], tmp_path, lines.append)
    assert lines == ["one", "two"]
    with pytest.raises(StageFailed, match=r"exited with 3(.|\n)*boom"):
        run_streaming(["bash", "-c", "echo boom; exit 3"], tmp_path, lines.append)


# ------------------------------------------------------------------------ publishing and judging


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A repo root with params.yaml and the outputs of an image pretraining + evaluation."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "models" / "image").mkdir(parents=True)
    (root / "models" / "image" / "checkpoint.pt").write_bytes(b"weights")
    (root / "metrics" / "eval").mkdir(parents=True)
    (root / "metrics" / "eval" / "image.json").write_text(json.dumps(
        {"linear_probe": {"task": "linear_probe", "metric": "top1", "pretrained": 0.8, "higher_is_better": True}}))
    return root


def test_files_to_publish_keeps_repository_paths(workspace: Path) -> None:
    files = files_to_publish(workspace, "image", ["models/{modality}", "metrics/eval/{modality}.json",
                                                  "reports/benchmark.md"])
    assert sorted(files) == ["metrics/eval/image.json", "models/image/checkpoint.pt"]
    assert files_to_publish(workspace, "image") == files  # default: d2v/layout.py's run files
    (workspace / "dvc.lock").write_text("schema: '2.0'\n")
    assert "dvc.lock" in files_to_publish(workspace, "image")


def test_store_config_resolves_a_relative_local_store_under_the_root(workspace: Path) -> None:
    assert store_config(workspace).uri == f"file://{(workspace / 'artifacts').resolve()}"
    assert store_config(workspace, "s3://b/p", "http://127.0.0.1:9").endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(("recorded", "rescored", "rescore", "expected"), [
    (0.7, 0.7, True, "promoted"),
    (0.9, 0.9, True, "kept_champion"),
    (0.9, 0.75, True, "promoted"),  # its recorded score was on other data: on today's it is worse
    (0.7, 0.85, True, "kept_champion"),
    (0.9, 0.75, False, "kept_champion"),  # re-scoring switched off: the recorded score decides
])
def test_judge_and_publish_promotes_only_a_model_that_is_not_worse_than_the_rescored_champion(
    workspace: Path, recorded: float, rescored: float, rescore: bool, expected: str
) -> None:
    cfg = ArtifactsConfig(uri=f"file://{workspace.parent / 'store'}")
    store = ArtifactStore.from_config(cfg)
    store.publish({"models/image/checkpoint.pt": workspace / "models/image/checkpoint.pt"}, run_id="old",
                  modality="image")
    store.promote("old", "image", Metric("linear_probe/top1", recorded))
    evaluated: list[tuple[str, bytes]] = []

    def evaluate(root: Path, modality: str, checkpoint: Path) -> Score:
        evaluated.append((modality, checkpoint.read_bytes()))  # the champion's verified download
        return Score("linear_probe/top1", rescored, True)

    decision, published = judge_and_publish.fn(str(workspace), cfg, "new-image", "image", "eval",
                                                ["models/{modality}", "metrics/eval/{modality}.json"],
                                                {"flow": "retrain"}, rescore, evaluate)
    assert decision.as_record()["decision"] == expected
    assert evaluated == ([("image", b"weights")] if rescore else [])
    extra = store.manifest("new-image").extra
    assert extra["decision"] == expected and extra["flow"] == "retrain" and extra["champion_run_id"] == "old"
    assert extra["candidate"] == {"metric": "linear_probe/top1", "value": 0.8}
    assert extra["champion"] == {"metric": "linear_probe/top1", "value": rescored if rescore else recorded}
    assert extra["champion_recorded"] == {"metric": "linear_probe/top1", "value": recorded}
    assert extra["champion_rescored"] is rescore
    assert store.pointer("image", "champion").run_id == ("new-image" if expected == "promoted" else "old")
    assert store.pointer("image", "latest").run_id == "new-image"  # published either way
    assert published["files"].keys() == {"models/image/checkpoint.pt", "metrics/eval/image.json"}


def test_a_champion_without_a_checkpoint_is_judged_on_its_recorded_score(workspace: Path) -> None:
    cfg = ArtifactsConfig(uri=f"file://{workspace.parent / 'store'}")
    store = ArtifactStore.from_config(cfg)
    store.publish({"metrics/eval/image.json": workspace / "metrics/eval/image.json"}, run_id="old",
                  modality="image")
    store.promote("old", "image", Metric("linear_probe/top1", 0.9))

    def evaluate(root: Path, modality: str, checkpoint: Path) -> Score:
        raise AssertionError("nothing to evaluate: the run has no checkpoint")

    decision, _ = judge_and_publish.fn(str(workspace), cfg, "new-image", "image", "eval", None,
                                       {"flow": "retrain"}, True, evaluate)
    extra = store.manifest("new-image").extra
    assert decision.as_record()["decision"] == "kept_champion"
    assert extra["champion_rescored"] is False and "has no checkpoint" in extra["champion_score_source"]


# ---------------------------------------------------------------------------------- prefect.yaml


def test_prefect_yaml_deployments_match_the_flows() -> None:
    import importlib

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"benchmark", "retrain"} <= set(deployments)
    assert "schedules" not in deployments["benchmark"]  # on demand
    assert deployments["retrain"]["schedules"][0]["cron"] and deployments["retrain"]["schedules"][0]["active"]
    assert deployments["benchmark"]["work_pool"]["name"] == "d2v-process"
    gpu_pools = {d["work_pool"]["name"] for d in deployments.values()} - {"d2v-process"}
    assert gpu_pools == {"d2v-gpu"} and "POOL:-d2v-gpu" in (REPO / "infra/prefect/gpu-pool.sh").read_text()
    assert "set_working_directory" in json.dumps(spec["pull"])
    for deployment in deployments.values():
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert set(deployment.get("parameters", {})) <= set(flow.parameters.properties), deployment["name"]


def test_warm_start_fetches_the_checkpoint_with_its_weights(workspace: Path, tmp_path: Path) -> None:
    import torch

    from d2v.train._selftest import StandInModel
    from d2v.train.checkpoint import DataPosition, ModelFingerprint, build_payload, load_checkpoint, save_checkpoint

    fingerprint = ModelFingerprint("image", 2, "tiny", "abc")
    model = StandInModel()
    save_checkpoint(workspace / "models/image/checkpoint.pt", build_payload(
        fingerprint=fingerprint, model_state=model.state_dict(), optimizer_state={}, scheduler_state={},
        rng_per_rank=[], step=3, position=DataPosition(0, 3), progress={}))
    cfg = ArtifactsConfig(uri=f"file://{workspace.parent / 'store'}")
    store = ArtifactStore.from_config(cfg)
    store.publish(files_to_publish(workspace, "image", ["models/{modality}"]), run_id="champ", modality="image")
    store.promote("champ", "image", Metric("linear_probe/top1", 0.8))

    path = fetch_champion_checkpoint.fn(str(workspace), cfg, "image", str(tmp_path / "warm"))
    payload = load_checkpoint(path, expected=fingerprint)  # the weights file came along
    assert payload["step"] == 3
    assert all(torch.equal(payload["model"][k], v) for k, v in model.state_dict().items())
