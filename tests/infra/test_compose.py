"""infra/compose.yaml: parses, has the team stack with healthchecks, and holds no secret."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "infra" / "compose.yaml"
ENV_EXAMPLE = REPO / "infra" / ".env.example"
# ${VAR}, ${VAR:-default}, ${VAR:?error} ... but not $${VAR}, which compose leaves to the container.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?+-][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)
LONG_RUNNING = ("postgres", "prefect-server", "minio", "worker", "worker-gpu")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "prefect-server", "minio", "minio-init", "worker", "worker-gpu"}


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_long_running_services_have_healthchecks(compose: dict[str, Any], service: str) -> None:
    check = compose["services"][service]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert check["interval"] and check["retries"] >= 3


def test_startup_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    worker = services["worker"]["depends_on"]
    assert worker["prefect-server"]["condition"] == "service_healthy"
    assert worker["minio-init"]["condition"] == "service_completed_successfully"


def test_prefect_server_uses_postgres(compose: dict[str, Any]) -> None:
    url = compose["services"]["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url


def test_workers_serve_the_process_pool_from_the_d2v_image(compose: dict[str, Any]) -> None:
    for name in ("worker", "worker-gpu"):
        worker = compose["services"][name]
        command = worker["command"]
        assert command[:3] == ["prefect", "worker", "start"]
        assert command[command.index("--pool") + 1] == "d2v-process"
        assert command[command.index("--type") + 1] == "process"
        assert (REPO / "infra" / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_minio_init_creates_both_buckets(compose: dict[str, Any]) -> None:
    init = compose["services"]["minio-init"]
    script = "\n".join(init["command"])
    assert re.search(r"mc mb --ignore-existing .*D2V_ARTIFACT_BUCKET.*D2V_DVC_BUCKET", script)
    assert "mc version enable" in script
    assert init["restart"] == "no"


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(VARIABLE.pattern, str(value)), f"{name}.{key} must be a ${{VAR}} reference"
    for text in _strings(compose):
        credentials = re.search(r"://([^/@\s]+):([^/@\s]+)@", text)
        if credentials:
            assert VARIABLE.fullmatch(credentials.group(2)), f"literal password in {text!r}"


def test_every_variable_is_declared_in_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    declared = set(_env_example())
    assert used and used <= declared, f"undeclared in infra/.env.example: {sorted(used - declared)}"


def test_env_example_secrets_are_placeholders() -> None:
    for name, value in _env_example().items():
        if re.search(r"PASSWORD|SECRET", name):
            assert value.startswith("change-me"), f"{name} in .env.example must be a change-me placeholder"


def test_real_env_file_is_git_ignored() -> None:
    result = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=REPO, check=False)
    assert result.returncode == 0
