"""infra/compose.yaml: parses, has the team stack with healthchecks, holds no secret and puts none in any
container's environment (Docker secret files instead), and gives d2v a MinIO key scoped to its buckets.
No Docker here: the compose file is checked as YAML, and infra/minio/init.sh runs against a fake `mc`."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE = INFRA / "compose.yaml"
ENV_EXAMPLE = INFRA / ".env.example"
SECRETS_DIR = INFRA / "secrets"
CREATE_SECRETS = SECRETS_DIR / "create.sh"
INIT_SCRIPT = INFRA / "minio" / "init.sh"
POLICY = INFRA / "minio" / "d2v-policy.json"
DOCKERIGNORE = REPO / ".dockerignore"
# ${VAR}, ${VAR:-default}, ${VAR:?error} ... but not $${VAR}, which compose leaves to the container.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?+-][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|ROOT_USER|CREDENTIAL", re.IGNORECASE)
LONG_RUNNING = ("postgres", "prefect-server", "minio", "worker", "worker-gpu")
# Which Docker secrets each service gets: no more (the workers never see the root or database
# credentials) and no fewer (each one it reads from /run/secrets).
SECRETS_OF = {
    "postgres": {"postgres_password"},
    "prefect-server": {"postgres_password"},
    "minio": {"minio_root_user", "minio_root_password"},
    "minio-init": {"minio_root_user", "minio_root_password", "d2v_s3_credentials"},
    "worker": {"d2v_s3_credentials"},
    "worker-gpu": {"d2v_s3_credentials"},
}
BUCKETS = {"D2V_ARTIFACT_BUCKET": "d2v-artifacts", "D2V_DVC_BUCKET": "d2v-dvc"}
# MinIO policy actions, as named in minio/pkg v3.1.3 policy/action.go (the release behind the pinned
# MinIO image); `mc admin policy create` rejects an unknown one.
MINIO_ACTIONS = {
    "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation", "s3:GetBucketVersioning",
    "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket", "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
}
NEVER_DELETE = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteBucket"}


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


def _secret_names(service: dict[str, Any]) -> set[str]:
    return {entry if isinstance(entry, str) else entry["source"] for entry in service.get("secrets", [])}


def _policy(buckets: dict[str, str]) -> dict[str, Any]:
    text = POLICY.read_text()
    for name, bucket in buckets.items():
        text = text.replace(f"@{name}@", bucket)
    return json.loads(text)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


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


def test_workers_serve_the_process_pool_from_the_d2v_image(compose: dict[str, Any]) -> None:
    for name in ("worker", "worker-gpu"):
        worker = compose["services"][name]
        command = worker["command"]
        assert command[:3] == ["prefect", "worker", "start"]
        assert command[command.index("--pool") + 1] == "d2v-process"
        assert command[command.index("--type") + 1] == "process"
        assert (INFRA / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


# --- no secret in compose, infra/.env or any container's environment ---

def test_no_secret_in_any_service_environment(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                # only a path to a mounted secret file: POSTGRES_PASSWORD_FILE, AWS_SHARED_CREDENTIALS_FILE ...
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), \
                    f"{name}.{key}: a secret-named variable must name a file under /run/secrets/"
            assert not any(SECRET_NAME.search(var) for var in VARIABLE.findall(value)), \
                f"{name}.{key}={value!r} substitutes a secret into the environment"
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{name}.{key}: credentials in a URL"
            # nothing that looks like a generated key: a long run of hex, or of base64 mixing cases and digits
            assert not re.search(r"[0-9a-fA-F]{16,}", value), f"{name}.{key}: {value!r} looks like a key"
            for token in re.findall(r"[A-Za-z0-9+/=]{20,}", value):
                assert not all(re.search(c, token) for c in (r"\d", "[a-z]", "[A-Z]")), \
                    f"{name}.{key}: {token!r} looks like a literal secret"


def test_no_secret_variable_is_substituted_anywhere(compose: dict[str, Any]) -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    assert not {var for var in used if SECRET_NAME.search(var)}, "secrets come from files, not ${VAR}"
    for text in _strings(compose):
        assert not re.search(r"://[^/@\s$]+:[^/@\s]+@", text), f"credentials in a URL: {text!r}"


def test_every_variable_is_declared_in_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    declared = set(_env_example())
    assert used and used <= declared, f"undeclared in infra/.env.example: {sorted(used - declared)}"


def test_env_example_holds_no_secret() -> None:
    secrets = [name for name in _env_example() if SECRET_NAME.search(name)]
    assert not secrets, f"infra/.env.example declares secrets {secrets}; they belong in infra/secrets/"
    assert "change-me" not in ENV_EXAMPLE.read_text()


def test_real_env_file_is_git_ignored() -> None:
    result = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=REPO, check=False)
    assert result.returncode == 0


# --- Docker secrets: declared, git-ignored, kept out of the image, mounted where read ---

def test_secrets_are_git_ignored_files_under_infra_secrets(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    assert set(declared) == set().union(*SECRETS_OF.values())
    for name, spec in declared.items():
        assert set(spec) == {"file"}, f"secret {name}: a file source only (no environment source)"
        path = (INFRA / spec["file"]).resolve()
        assert path.parent == SECRETS_DIR and path.name == name
        relative = str(path.relative_to(REPO))
        ignored = subprocess.run(["git", "check-ignore", "-q", relative], cwd=REPO, check=False)
        assert ignored.returncode == 0, f"{relative} is not git-ignored"
    for kept in (CREATE_SECRETS, SECRETS_DIR / "README.md", SECRETS_DIR / ".gitignore"):
        relative = str(kept.relative_to(REPO))
        assert subprocess.run(["git", "check-ignore", "-q", relative], cwd=REPO, check=False).returncode == 1


def test_secret_files_are_left_out_of_the_image_build_context(compose: dict[str, Any]) -> None:
    # The d2v image copies the build context (the repository root); .dockerignore must drop the secrets.
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    for spec in compose["secrets"].values():
        parts = (INFRA / spec["file"]).resolve().relative_to(REPO).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        assert any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
                   for pattern in patterns for prefix in prefixes), \
            f"{'/'.join(parts)} would be baked into the image: add infra/secrets to .dockerignore"


@pytest.mark.parametrize("service", sorted(SECRETS_OF))
def test_each_service_mounts_exactly_the_secrets_it_reads(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert _secret_names(spec) == SECRETS_OF[service]
    read = set(re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", "\n".join(_strings(spec))))
    if service == "minio-init":  # the script it runs reads them
        script = INIT_SCRIPT.read_text()
        read |= set(re.findall(r"\$secrets/([a-z0-9_]+)", script)) | set(re.findall(r"read_secret ([a-z0-9_]+)\)", script))
    assert read == SECRETS_OF[service], f"{service} reads {sorted(read)}"


def test_services_read_their_secrets_from_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    minio = services["minio"]["environment"]
    assert minio["MINIO_ROOT_USER_FILE"] == "/run/secrets/minio_root_user"
    assert minio["MINIO_ROOT_PASSWORD_FILE"] == "/run/secrets/minio_root_password"
    # an empty file would make MinIO fall back to minioadmin/minioadmin: it refuses to start instead
    script = "\n".join(_as_list(services["minio"]["command"]))
    assert "[ -s " in script and script.rstrip().endswith("exec minio server /data --console-address :9001")
    for name in ("worker", "worker-gpu"):
        env = services[name]["environment"]
        assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/run/secrets/d2v_s3_credentials"
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)


def test_workers_cannot_read_the_checkouts_secret_files(compose: dict[str, Any]) -> None:
    # The workers bind-mount the checkout, infra/secrets/ included: an empty tmpfs covers that directory.
    for name in ("worker", "worker-gpu"):
        volumes = compose["services"][name]["volumes"]
        assert "..:/srv/d2v" in volumes
        assert {"type": "tmpfs", "target": "/srv/d2v/infra/secrets"}.items() <= next(
            v for v in volumes if isinstance(v, dict)).items()


# --- Prefect server: database URL from settings, password from the secret file ---

def test_prefect_server_builds_the_database_url_with_the_secret_password(
        compose: dict[str, Any], tmp_path: Path) -> None:
    server = compose["services"]["prefect-server"]
    env = server["environment"]
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env and "PREFECT_SERVER_DATABASE_PASSWORD" not in env
    assert env["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert env["PREFECT_SERVER_DATABASE_HOST"] == "postgres" and str(env["PREFECT_SERVER_DATABASE_PORT"]) == "5432"
    shell, flags, script = server["command"]
    assert shell == "/bin/sh" and flags == "-euc"
    assert "exec prefect server start --host 0.0.0.0 --port 4200" in script
    # Run the start command for real, with the secret file in tmp and a `prefect` that prints the URL
    # Prefect's own settings build from the environment it was exec'd with.
    (tmp_path / "postgres_password").write_text("pa ss/w@rd\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "prefect"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'from prefect.settings import get_current_settings; "
                    "print(get_current_settings().server.database.connection_url.get_secret_value())'\n")
    fake.chmod(0o755)
    run_env = {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)) for key, value in env.items()}
    run_env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(tmp_path), PREFECT_HOME=str(tmp_path / "p"))
    script = script.replace("$$", "$").replace("/run/secrets/", f"{tmp_path}/")
    result = subprocess.run(["/bin/sh", "-euc", script], env=run_env, capture_output=True, text=True,
                            check=True, timeout=120)
    from sqlalchemy.engine import make_url

    url = make_url(result.stdout.strip().splitlines()[-1])
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+asyncpg", "prefect", "pa ss/w@rd", "postgres", 5432, "prefect")


# --- the d2v S3 key: an AWS credentials file that boto3 and DVC's S3 remote read ---

def _clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, credentials: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _assert_credentials_file_is_read(credentials: Path, key_id: str, secret: str) -> None:
    found = boto3.Session().get_credentials()
    assert found is not None and found.method == "shared-credentials-file"
    assert (found.access_key, found.secret_key) == (key_id, secret)
    # DVC's S3 remote goes through s3fs -> aiobotocore, which resolves credentials the same way
    from aiobotocore.session import get_session

    async def resolve() -> Any:
        return await get_session().get_credentials()

    found = asyncio.run(resolve())
    assert (found.access_key, found.secret_key) == (key_id, secret)


def test_documented_credentials_file_format_is_read_by_boto3_and_aiobotocore(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "d2v_s3_credentials"
    credentials.write_text("[default]\naws_access_key_id = d2v-worker\naws_secret_access_key = 0123dummy4567\n")
    _clean_aws_env(monkeypatch, tmp_path, credentials)
    _assert_credentials_file_is_read(credentials, "d2v-worker", "0123dummy4567")


@pytest.fixture()
def created_secrets(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    secrets = tmp_path / "infra" / "secrets"
    secrets.mkdir(parents=True)
    shutil.copy(CREATE_SECRETS, secrets / "create.sh")
    subprocess.run(["sh", str(secrets / "create.sh")], check=True, capture_output=True, timeout=30)
    return secrets


def test_create_script_makes_every_secret_once(created_secrets: Path, compose: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert stat.S_IMODE(created_secrets.stat().st_mode) == 0o700
    contents = {}
    for name in compose["secrets"]:
        path = created_secrets / name
        assert path.read_text().strip() and stat.S_IMODE(path.stat().st_mode) == 0o644
        contents[name] = path.read_text()
    assert len(contents["postgres_password"].strip()) == 40 and len(contents["minio_root_password"].strip()) == 40
    again = subprocess.run(["sh", str(created_secrets / "create.sh")], check=True, capture_output=True,
                           text=True, timeout=30)
    assert "created" not in again.stdout
    assert {name: (created_secrets / name).read_text() for name in contents} == contents
    credentials = created_secrets / "d2v_s3_credentials"
    secret = re.search(r"aws_secret_access_key = ([0-9a-f]{40})\n", credentials.read_text()).group(1)
    _clean_aws_env(monkeypatch, tmp_path, credentials)
    _assert_credentials_file_is_read(credentials, "d2v-worker", secret)


# --- MinIO: the d2v policy and the init script ---

@pytest.mark.parametrize("buckets", [BUCKETS, {"D2V_ARTIFACT_BUCKET": "team.artifacts-1", "D2V_DVC_BUCKET": "x" * 63}])
def test_d2v_policy_is_scoped_to_the_d2v_buckets_and_never_deletes(buckets: dict[str, str]) -> None:
    policy = _policy(buckets)
    assert len(json.dumps(policy)) < 20 * 1024  # MinIO's policy size limit
    allowed_resources = {f"arn:aws:s3:::{b}{suffix}" for b in buckets.values() for suffix in ("", "/*")}
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert allows and {s["Effect"] for s in policy["Statement"]} == {"Allow", "Deny"}
    for statement in policy["Statement"]:
        assert "NotAction" not in statement and "NotResource" not in statement
        actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
        assert set(actions) <= MINIO_ACTIONS, f"unknown to MinIO: {set(actions) - MINIO_ACTIONS}"
        assert set(resources) <= allowed_resources, f"outside the d2v buckets: {set(resources) - allowed_resources}"
        assert not any("*" in a for a in actions) and "*" not in resources
    granted = {a for s in allows for a in _as_list(s["Action"])}
    assert not any(a.startswith("s3:Delete") or (a.startswith("s3:Put") and a != "s3:PutObject") for a in granted)
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject"} <= granted
    granted_on = {r for s in allows for r in _as_list(s["Resource"])}
    assert granted_on == allowed_resources
    # an explicit deny as well, so that no other policy attached later can grant deletes on these buckets
    assert any(NEVER_DELETE <= set(_as_list(s["Action"])) and set(_as_list(s["Resource"])) == allowed_resources
               for s in denies)


def test_minio_init_runs_the_script_with_errors_stopping_it(compose: dict[str, Any]) -> None:
    init = compose["services"]["minio-init"]
    assert init["entrypoint"] == ["/bin/sh", "-eu", "/etc/d2v-minio/init.sh"]
    assert "./minio:/etc/d2v-minio:ro" in init["volumes"]
    assert init["restart"] == "no"
    assert set(init["environment"]) == set(BUCKETS)
    lines = [line.strip() for line in INIT_SCRIPT.read_text().splitlines()]
    code = [line for line in lines if line and not line.startswith("#")]
    assert code[0] == "set -eu"
    text = "\n".join(code)
    for swallowed in (r"\|\|\s*true", r"\|\|\s*:", r"\|\|\s*exit 0", r"2>\s*/dev/null", r"set \+e"):
        assert not re.search(swallowed, text), f"init.sh swallows errors: {swallowed}"
    assert re.search(r"mc mb --ignore-existing .*artifact_bucket.*dvc_bucket", text)
    assert 'mc version enable "local/$artifact_bucket"' in text
    assert "mc admin policy create local d2v" in text and "readwrite --user" not in text


FAKE_MC = r"""#!/bin/sh
# A stand-in for mc: logs its arguments and stdin, keeps the key's policies in $MC_STATE/policies.
printf 'ARGV %s\n' "$*" >> "$MC_STATE/log"
case "$*" in
    "${MC_FAIL:-no failure}"*) echo "mc: <ERROR> injected failure" >&2; exit 1 ;;
    "alias set"* | "admin user add"*) while IFS= read -r line; do printf 'STDIN %s\n' "$line" >> "$MC_STATE/log"; done ;;
    "admin policy create local d2v "*) cp "$6" "$MC_STATE/policy.json" ;;
    "--json admin user info local "*)
        policies=$(cat "$MC_STATE/policies")
        printf '{\n "status": "success",\n "accessKey": "%s",\n' "$6"
        [ -z "$policies" ] || printf ' "policyName": "%s",\n' "$policies"
        printf ' "userStatus": "enabled"\n}\n' ;;
    "admin policy attach local d2v --user "*)
        policies=$(cat "$MC_STATE/policies"); echo "${policies:+$policies,}d2v" > "$MC_STATE/policies" ;;
    "admin policy detach local readwrite --user "*) echo d2v > "$MC_STATE/policies" ;;
esac
"""
SHELLS = [name for name in ("dash", "bash") if shutil.which(name)] or ["sh"]


def _run_init(shell: str, secrets: Path, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = state / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    run_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MC_STATE": str(state), "D2V_SECRETS_DIR": str(secrets),
               "TMPDIR": str(state), **env}
    return subprocess.run([shell, "-eu", str(INIT_SCRIPT)], env=run_env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shell", SHELLS)
def test_init_script_converges_on_the_d2v_policy_only(shell: str, created_secrets: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "policies").write_text("readwrite\n")  # what the earlier init attached to the key
    first = _run_init(shell, created_secrets, state, D2V_DVC_BUCKET="team-dvc")
    assert first.returncode == 0, first.stderr
    second = _run_init(shell, created_secrets, state, D2V_DVC_BUCKET="team-dvc")
    assert second.returncode == 0, second.stderr
    log = (state / "log").read_text()
    runs = log.split("ARGV alias set")[1:]
    assert len(runs) == 2
    assert "ARGV admin policy attach local d2v --user d2v-worker" in runs[0]
    assert "ARGV admin policy detach local readwrite --user d2v-worker" in runs[0]
    assert "policy attach" not in runs[1] and "policy detach" not in runs[1]  # nothing left to change
    assert (state / "policies").read_text().strip() == "d2v"
    # the keys travel on stdin, never on a command line
    argv = "\n".join(line for line in log.splitlines() if line.startswith("ARGV"))
    secret_values = [(created_secrets / "minio_root_password").read_text().strip(),
                     re.search(r"aws_secret_access_key = (\S+)", (created_secrets / "d2v_s3_credentials").read_text())[1]]
    assert not any(value in argv or value in first.stdout + first.stderr for value in secret_values)
    assert f"STDIN d2v-admin\nSTDIN {secret_values[0]}\n" in log and f"STDIN d2v-worker\nSTDIN {secret_values[1]}\n" in log
    assert "ARGV mb --ignore-existing local/d2v-artifacts local/team-dvc" in log
    # the policy mc was given names the buckets of this run
    resources = {r for s in json.loads((state / "policy.json").read_text())["Statement"] for r in _as_list(s["Resource"])}
    assert {r.split(":::")[1].split("/")[0] for r in resources} == {"d2v-artifacts", "team-dvc"}


@pytest.mark.parametrize("failing", ["version enable", "admin policy attach"])
def test_init_script_stops_at_the_first_error(failing: str, created_secrets: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "policies").write_text("")
    result = _run_init(SHELLS[0], created_secrets, state, MC_FAIL=failing)
    assert result.returncode != 0 and "injected failure" in result.stderr
    assert (state / "log").read_text().rstrip().splitlines()[-1].startswith(f"ARGV {failing}")


@pytest.mark.parametrize("broken", ["empty root password", "no key in credentials", "bad bucket"])
def test_init_script_refuses_bad_inputs(broken: str, created_secrets: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "policies").write_text("")
    env = {}
    if broken == "empty root password":
        (created_secrets / "minio_root_password").write_text("")
    elif broken == "no key in credentials":
        (created_secrets / "d2v_s3_credentials").write_text("[other]\naws_access_key_id = x\naws_secret_access_key = y\n")
    else:
        env["D2V_ARTIFACT_BUCKET"] = "Bad_Bucket"
    result = _run_init(SHELLS[0], created_secrets, state, **env)
    assert result.returncode != 0 and result.stderr.startswith("minio-init: ")
    assert not (state / "log").exists(), "mc ran before the inputs were checked"
