"""The Kubernetes objects the project creates, validated offline against the Kubernetes schema.

Two sources of manifests: the Prefect work pool's Job (k8s-gpu-job-template.json, rendered by
infra/prefect/render_job.py as the prefect-kubernetes worker would) and the multi-node Service +
Indexed Job (multinode/launch.sh with RENDER_ONLY=1). Each is rendered with several settings and
validated, strictly (unknown fields are errors), with kubernetes-validate, which ships the
OpenAPI-derived JSON schemas of each Kubernetes release in the package: no network. No cluster
runs them here; `kubectl apply --dry-run=server` on a real cluster is the next check.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as k8s

from pod_support import render_prefect_job
from test_docker import DOCKERFILE, parse_dockerfile

REPO = Path(__file__).resolve().parents[2]
RENDER_JOB = REPO / "infra" / "prefect" / "render_job.py"
LAUNCH = REPO / "infra" / "prefect" / "multinode" / "launch.sh"
# The oldest release the manifests need (Indexed Jobs with the batch.kubernetes.io/job-name pod
# label: 1.27; 1.28 is the oldest still in the clouds' extended support) and the newest bundled.
K8S_VERSIONS = ("1.28.0", "1.37.0")
LAUNCHER_ENV = {"D2V_NODE_RANK", "D2V_NNODES", "D2V_NPROC_PER_NODE", "D2V_RDZV_BACKEND", "D2V_RDZV_ENDPOINT",
                "D2V_RDZV_ID"}


def validate(manifest: dict[str, Any], version: str) -> None:
    k8s.validate(manifest, version, strict=True)


def render_multinode(**variables: str) -> list[dict[str, Any]]:
    env = {**os.environ, "RENDER_ONLY": "1", "DVC_REMOTE": "s3://d2v-dvc/d2v", **variables}
    done = subprocess.run(["bash", str(LAUNCH)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


PREFECT_CASES = {
    "defaults": (),
    "s3 remote, 8 GPUs, extra env": ("gpus_per_node=8", "dvc_remote=s3://d2v-dvc/d2v", "pull_stages=pretrain@image",
                                     'env={"PREFECT_API_URL": "http://prefect:4200/api", "NO_COLOR": "1"}'),
    "claim + git clone": ('data_volume={"name": "d2v-data", "persistentVolumeClaim": {"claimName": "d2v-data"}}',
                          "dvc_remote=/mnt/d2v/dvc-remote", "git_url=https://git.example/d2v.git",
                          "git_ref=v0.1.0", "push_outputs=0"),
}
MULTINODE_CASES = {
    "defaults": {},
    "4 nodes, claim, clone": {"NNODES": "4", "GPUS_PER_NODE": "8", "DATA_PVC": "d2v-data", "MODALITY": "text",
                              "GIT_URL": "https://git.example/d2v.git", "GIT_REF": "main", "JOB_NAME": "pt-4"},
    "claim only, no push": {"DVC_REMOTE": "", "DATA_PVC": "d2v-cache", "PUSH": "0"},
}


def _rendered() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sets in PREFECT_CASES.items():
        yield f"prefect job: {name}", render_prefect_job(*sets)
    for name, variables in MULTINODE_CASES.items():
        for obj in render_multinode(**variables):
            yield f"multinode {obj['kind']}: {name}", obj


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    return dict(_rendered())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_manifest_is_valid_kubernetes(rendered: dict[str, dict[str, Any]], version: str) -> None:
    assert len(rendered) == len(PREFECT_CASES) + 2 * len(MULTINODE_CASES)
    for name, manifest in rendered.items():
        try:
            validate(manifest, version)
        except k8s.ValidationError as exc:
            pytest.fail(f"{name} is not valid Kubernetes {version}: {exc.message} at {list(exc.absolute_path)}")


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


BREAKAGES = {
    "env value not a string": lambda job: _pod(job)["containers"][0]["env"].append({"name": "N", "value": 2}),
    "misspelt field": lambda job: _pod(job)["containers"][0].update(volumeMount=[]),
    "claim without claimName": lambda job: _pod(job)["volumes"].append({"name": "x", "persistentVolumeClaim": {}}),
    "completions as a string": lambda job: job["spec"].update(completions="2"),
    "container without a name": lambda job: _pod(job)["containers"][0].pop("name"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_manifest_fails_validation(rendered: dict[str, dict[str, Any]], breakage: str) -> None:
    job = copy.deepcopy(rendered["multinode Job: defaults"])
    validate(job, K8S_VERSIONS[0])
    BREAKAGES[breakage](job)
    with pytest.raises(k8s.ValidationError):
        validate(job, K8S_VERSIONS[0])


def test_an_unknown_kind_or_version_is_refused() -> None:
    with pytest.raises(k8s.SchemaNotFoundError):
        validate({"apiVersion": "batch/v1", "kind": "Jobb", "metadata": {"name": "x"}}, K8S_VERSIONS[0])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_prefect_job_bootstraps_the_pod_before_prefects_command() -> None:
    job = render_prefect_job("pull_stages=pretrain@image", "dvc_remote=s3://d2v-dvc/d2v",
                             'env={"D2V_PUSH": "0", "PREFECT_API_URL": "http://prefect/api"}')
    pod = _pod(job)
    container = pod["containers"][0]
    assert container["command"] == ["/usr/bin/tini", "-g", "--", "d2v-pod"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = _env(container)
    assert env["D2V_DVC_REMOTE"] == "s3://d2v-dvc/d2v" and env["D2V_PULL_STAGES"] == "pretrain@image"
    assert env["D2V_DVC_CACHE_DIR"].startswith("/mnt/d2v/")
    # The worker's `env` comes first and wins over the template's own entry, as prefect-kubernetes does.
    assert container["env"][0] == {"name": "D2V_PUSH", "value": "0"}
    assert [item["name"] for item in container["env"]].count("D2V_PUSH") == 1
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["d2v-data"] == {"name": "d2v-data", "emptyDir": {}}
    assert {"name": "d2v-data", "mountPath": "/mnt/d2v"} in container["volumeMounts"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_multinode_job_hands_the_launcher_its_rendezvous() -> None:
    service, job = render_multinode(JOB_NAME="pt-7", NNODES="4", GPUS_PER_NODE="8", RDZV_PORT="29500",
                                    MAX_RESTARTS="2", RDZV_JOIN_TIMEOUT_S="600", MODALITY="speech")
    pod = _pod(job)
    container = pod["containers"][0]
    assert container["command"] == ["/usr/bin/tini", "-g", "--", "d2v-pod"]
    assert container["args"] == ["dvc", "repro", "--single-item", "--force", "pretrain@speech"]
    env = _env(container)
    assert LAUNCHER_ENV <= set(env)
    assert env["D2V_NODE_RANK"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert (env["D2V_NNODES"], env["D2V_NPROC_PER_NODE"], env["D2V_RDZV_BACKEND"]) == ("4", "8", "c10d")
    # Pod 0's stable DNS name through the headless Service: <job>-0.<service>.
    assert env["D2V_RDZV_ENDPOINT"] == "pt-7-0.pt-7:29500" and env["D2V_RDZV_ID"] == "pt-7"
    assert pod["subdomain"] == service["metadata"]["name"] == "pt-7"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == 29500
    assert (env["PET_MAX_RESTARTS"], env["PET_RDZV_CONF"]) == ("2", "join_timeout=600")
    assert env["D2V_DVC_REMOTE"] == "s3://d2v-dvc/d2v" and env["D2V_PUSH"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert pod["volumes"][1] == {"name": "d2v-data", "emptyDir": {}}


def test_multinode_claim_replaces_the_scratch_volume() -> None:
    _, job = render_multinode(DATA_PVC="d2v-cache", COMMAND="d2v pretrain image --params 'my params.yaml'")
    pod = _pod(job)
    assert pod["volumes"][1] == {"name": "d2v-data", "persistentVolumeClaim": {"claimName": "d2v-cache"}}
    assert pod["containers"][0]["args"] == ["d2v", "pretrain", "image", "--params", "my params.yaml"]


@pytest.mark.parametrize("variables, message", [
    ({"DVC_REMOTE": ""}, "set DVC_REMOTE"),
    ({"DVC_REMOTE": "", "DATA_PVC": "c"}, "PUSH=1 needs DVC_REMOTE"),
    ({"PUSH": "yes"}, "PUSH must be 0 or 1"),
    ({"TRAIN_ARGS": "image --params p.yaml"}, "TRAIN_ARGS is no longer used"),
])
def test_multinode_launcher_refuses_a_pod_without_data(variables: dict[str, str], message: str) -> None:
    env = {**os.environ, "RENDER_ONLY": "1", "DVC_REMOTE": "s3://b/p", **variables}
    done = subprocess.run(["bash", str(LAUNCH)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_render_job_cli_prints_the_job_and_refuses_bad_variables() -> None:
    def cli(*sets: str) -> subprocess.CompletedProcess[str]:
        args = [arg for item in sets for arg in ("--set", item)]
        return subprocess.run([sys.executable, str(RENDER_JOB), *args], capture_output=True, text=True, check=False)

    done = cli("gpus_per_node=4", "push_outputs=0")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == render_prefect_job("gpus_per_node=4", "push_outputs=0")
    done = cli("gpus=8")
    assert done.returncode == 2 and "unknown job variables ['gpus']" in done.stderr
    done = cli("push_outputs=yes")
    assert done.returncode == 2 and "push_outputs: 'yes' is not one of ['0', '1']" in done.stderr


def test_prefect_pull_step_resolves_d2v_root_in_the_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect.yaml's pull step, deployed from a shell without D2V_ROOT, is stored as the placeholder
    (verified against a Prefect 3.9.1 server by hand: see docs/scale.md); the flow run resolves it
    from the pod's environment, which the image and d2v-pod set."""
    import asyncio

    from prefect.deployments.steps import core

    async def unchanged(value: Any, *args: Any, **kwargs: Any) -> Any:
        return value

    # Block and variable references need a Prefect API (a temporary server: ~20 s); there are none.
    monkeypatch.setattr(core, "resolve_block_document_references", unchanged)
    monkeypatch.setattr(core, "resolve_variables", unchanged)
    pull = yaml.safe_load((REPO / "prefect.yaml").read_text())["pull"]
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $D2V_ROOT }}"}}]
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("D2V_ROOT", str(tmp_path))
    asyncio.run(core.run_steps(pull))
    assert Path.cwd() == tmp_path


def test_the_image_installs_the_bootstrap_the_manifests_start() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    final = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"):]
    assert ("COPY", "--chmod=0755 infra/docker/entrypoint.py /usr/local/bin/d2v-pod") in final
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "D2V_ROOT=/srv/d2v" in env and "PATH=/opt/venv/bin:" in env  # the shebang's python3 is the venv's
    assert (REPO / "infra" / "docker" / "entrypoint.py").read_text().startswith("#!/usr/bin/env python3\n")
    prefect = _pod(render_prefect_job())["containers"][0]["command"]
    multinode = _pod(render_multinode()[1])["containers"][0]["command"]
    assert prefect == multinode == ["/usr/bin/tini", "-g", "--", "d2v-pod"]
