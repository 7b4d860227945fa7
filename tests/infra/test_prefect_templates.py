"""infra/prefect: the Kubernetes GPU base job template, the pool script and the multi-node launcher."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.templating import apply_values, find_placeholders

REPO = Path(__file__).resolve().parents[2]
PREFECT_DIR = REPO / "infra" / "prefect"
TEMPLATE = PREFECT_DIR / "k8s-gpu-job-template.json"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def _render(template: dict[str, Any], **values: Any) -> dict[str, Any]:
    """What the worker builds for one flow run: variable defaults, then the run's values."""
    properties = template["variables"]["properties"]
    merged = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    merged.update(name="flow-run-1", command="prefect flow-run execute", **values)
    return apply_values(template["job_configuration"], merged)


def _container(job_configuration: dict[str, Any]) -> dict[str, Any]:
    return job_configuration["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def test_every_placeholder_is_a_declared_variable(template: dict[str, Any]) -> None:
    used = {placeholder.name for placeholder in find_placeholders(template["job_configuration"])}
    declared = set(template["variables"]["properties"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    # On Kubernetes a variable that no placeholder uses does nothing: none may be dead.
    assert declared <= used, f"declared but unused: {sorted(declared - used)}"


def test_prefect_accepts_the_template(template: dict[str, Any]) -> None:
    pool = WorkPoolCreate(name="d2v-gpu", type="kubernetes", base_job_template=template)
    assert pool.base_job_template["job_configuration"]["job_manifest"]["kind"] == "Job"


def test_rendered_job_requests_gpus_shared_memory_and_secrets(template: dict[str, Any]) -> None:
    configuration = _render(template, gpus_per_node=8)
    assert "{{" not in json.dumps(configuration)
    container = _container(configuration)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 8
    assert container["envFrom"] == [{"secretRef": {"name": "d2v-s3-credentials"}}]
    pod = configuration["job_manifest"]["spec"]["template"]["spec"]
    shm = {volume["name"]: volume for volume in pod["volumes"]}["dshm"]["emptyDir"]
    assert shm["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["args"] == "prefect flow-run execute"


def test_template_defaults_request_at_least_one_gpu(template: dict[str, Any]) -> None:
    gpus = template["variables"]["properties"]["gpus_per_node"]
    assert gpus["type"] == "integer" and gpus["default"] >= 1 and gpus["minimum"] >= 1
    assert _container(_render(template))["resources"]["limits"]["nvidia.com/gpu"] == gpus["default"]


def _fake_prefect(tmp_path: Path) -> Path:
    """A `prefect` stand-in: no pool exists yet; `create`/`update` save the template they get."""
    fake = tmp_path / "prefect"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'echo "$*" >> "$FAKE_LOG"\n'
        '[[ "$1 $2" == "work-pool inspect" && ! -f "$FAKE_SAVED" ]] && exit 1\n'
        'for ((i = 1; i <= $#; i++)); do\n'
        '  [[ "${!i}" == --base-job-template ]] && { j=$((i + 1)); cp "${!j}" "$FAKE_SAVED"; }\n'
        "done\n"
        "exit 0\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def test_pool_script_creates_then_updates_with_site_defaults(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT": str(_fake_prefect(tmp_path)), "FAKE_LOG": str(tmp_path / "log"),
           "FAKE_SAVED": str(tmp_path / "saved.json"), "D2V_IMAGE": "registry.example/d2v:1.2",
           "D2V_GPUS_PER_NODE": "4"}
    for _ in range(2):
        subprocess.run(["bash", str(PREFECT_DIR / "gpu-pool.sh")], env=env, check=True, capture_output=True)
    calls = (tmp_path / "log").read_text().splitlines()
    assert calls[1].startswith("work-pool create d2v-gpu --type kubernetes --base-job-template")
    assert calls[4].startswith("work-pool update d2v-gpu --base-job-template")
    properties = json.loads((tmp_path / "saved.json").read_text())["variables"]["properties"]
    assert properties["image"]["default"] == "registry.example/d2v:1.2"
    assert properties["gpus_per_node"]["default"] == 4


def _launch(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RENDER_ONLY": "1", **variables}
    return subprocess.run(["bash", str(PREFECT_DIR / "multinode" / "launch.sh")], env=env,
                          capture_output=True, text=True, check=False)


def test_multinode_launcher_renders_an_indexed_job_with_c10d_rendezvous() -> None:
    result = _launch(JOB_NAME="pretrain-7", NNODES="4", GPUS_PER_NODE="8", RDZV_PORT="29500",
                     MODALITY="text", DVC_REMOTE="s3://d2v-dvc/d2v")
    assert result.returncode == 0, result.stderr
    service, job = yaml.safe_load_all(result.stdout)
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == "pretrain-7"
    container = pod["containers"][0]
    # The pods run the DVC stage; `d2v pretrain` starts torchrun from the launcher's environment
    # (d2v/train/launch.py). tests/infra/test_k8s_manifests.py checks that environment in full.
    assert container["args"] == ["dvc", "repro", "--single-item", "--force", "pretrain@text"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert (env["D2V_NNODES"], env["D2V_NPROC_PER_NODE"], env["D2V_RDZV_BACKEND"]) == ("4", "8", "c10d")
    assert env["D2V_RDZV_ENDPOINT"] == "pretrain-7-0.pretrain-7:29500" and env["D2V_RDZV_ID"] == "pretrain-7"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert pod["volumes"][0]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("variables, message", [
    ({"NNODES": "two"}, "NNODES must be a non-negative integer"),
    ({"GPUS_PER_NODE": "0"}, "at least 1"),
    ({"JOB_NAME": "Pretrain_7"}, "must be a DNS label"),
])
def test_multinode_launcher_rejects_bad_parameters(variables: dict[str, str], message: str) -> None:
    result = _launch(**variables)
    assert result.returncode == 2 and message in result.stderr
