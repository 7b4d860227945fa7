"""A real Prefect stack for the flow tests: a server on 127.0.0.1, a process worker, a repo copy.

Measured gotchas (reference/mlops-stack.md): a fresh PREFECT_HOME takes 20-40 s before the API
answers, so the wait is 120 s; analytics off (database-locked noise); the worker is stopped before
the server, with SIGINT twice (one SIGINT or a SIGTERM may not stop it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 120

# The tiny profile: a few hundred images, 3 pretraining updates, minimal evaluation budgets.
TINY_DATA = {"image": {"train_size": 200, "valid_size": 50, "test_size": 100}}
TINY_PRETRAIN = {"max_steps": 3, "warmup_steps": 1, "checkpoint_every": 3, "log_every": 1, "batch_size": 8}
TINY_EVAL_IMAGE = {"n_test": 50, "linear_probe": {"epochs": 5, "n_train": 100},
                   "finetune": {"epochs": 1, "n_train": 32}}


def prefect_env(home: Path, api_url: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "TQDM_DISABLE": "1",
        "NO_COLOR": "1",
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra or {})
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def _deep_update(tree: dict, overrides: dict) -> None:
    """Apply overrides to keys that exist (the params schema belongs to other stages' owners)."""
    for key, value in overrides.items():
        if key not in tree:
            continue
        if isinstance(value, dict) and isinstance(tree[key], dict):
            _deep_update(tree[key], value)
        else:
            tree[key] = value


def copy_tracked_files(dest: Path) -> None:
    """The repository's tracked files, as they are in the working tree, under `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)


def commit_all(dest: Path, message: str) -> None:
    """`dest` as a fresh git repository with everything in it committed (identity given: CI has none)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    run(["git", "init", "-q", "-b", "main"], dest, env)
    run(["git", "add", "-A"], dest, env)
    run(["git", "-c", "user.email=t@t.invalid", "-c", "user.name=t", "commit", "-qm", message], dest, env)


def make_repo_copy(dest: Path, artifacts_uri: str, endpoint_url: str | None) -> Path:
    """The repository's tracked files (as in the working tree) in a fresh git repo, tiny params."""
    copy_tracked_files(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    _deep_update(params, {"data": TINY_DATA,
                          "pretrain": {m: TINY_PRETRAIN for m in ("image", "speech", "text")},
                          "evaluate": {"image": TINY_EVAL_IMAGE},
                          "artifacts": {"uri": artifacts_uri, "endpoint_url": endpoint_url}})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(dest, "tiny")
    return dest


def wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"prefect server not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def start_process(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_process(proc: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGINT, a second SIGINT (Prefect escalates to a hard stop), then SIGKILL as a last resort."""
    for _ in range(2):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait(timeout=10)
