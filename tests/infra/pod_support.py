"""Run the training pod's container locally: the image's tree, its bootstrap (d2v-pod) and the
environment a rendered Kubernetes manifest gives it.

No Docker engine and no cluster here, so a "pod" is a directory holding what `COPY . /srv/d2v`
puts in the image (the git-tracked files that .dockerignore lets through: no .git, no data), and a
process running infra/docker/entrypoint.py with the container's args and env from the manifest.
The cluster's own parts are substituted, and only those: the Job controller's completion index,
the pod DNS name of the rendezvous (127.0.0.1), the Secret's keys (moto's credentials and
endpoint), and the volume mounted at /mnt/d2v (a directory per pod).
"""

from __future__ import annotations

import fnmatch
import functools
import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "infra" / "docker" / "entrypoint.py"
LAUNCH = REPO / "infra" / "prefect" / "multinode" / "launch.sh"
RENDER_JOB = REPO / "infra" / "prefect" / "render_job.py"
TINI_PREFIX = ["/usr/bin/tini", "-g", "--"]
VOLUME_MOUNT = "/mnt/d2v"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def _load_script(name: str, path: Path) -> ModuleType:
    """A script of infra/ (not part of a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(module)
    return module


def load_entrypoint() -> ModuleType:
    return _load_script("d2v_pod_entrypoint", ENTRYPOINT)


@functools.cache
def _render_job_module() -> ModuleType:
    return _load_script("d2v_render_job", RENDER_JOB)


def render_prefect_job(*sets: str) -> dict[str, Any]:
    """`infra/prefect/render_job.py --set NAME=VALUE ...`, in this process (Prefect imported once)."""
    module = _render_job_module()
    template = json.loads(module.TEMPLATE.read_text())
    properties = template["variables"]["properties"]
    values = {name: module.parse_value(raw, properties[name])
              for name, _, raw in (item.partition("=") for item in sets)}
    return module.render_job(values, template)


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in (REPO / ".dockerignore").read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, as far as the patterns in .dockerignore use it: a pattern matches the path or
    a parent directory; `**/` matches any number of directories."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        variants = {pattern, pattern.removeprefix("**/"), pattern.replace("/**/", "/")}
        if any(fnmatch.fnmatch(prefix, variant) for variant in variants for prefix in prefixes):
            return True
    return False


def image_tree(dest: Path, source: Path = REPO) -> Path:
    """What `COPY . /srv/d2v` puts in the image built from `source`: its files that .dockerignore
    keeps. For this repository: the working tree's files that git tracks or would track (new files
    not yet committed are in a build context too; git-ignored ones are local state: .venv, data ...).
    For a checkout copied without .git, such as a developer's tree after `dvc repro`: every file."""
    if source == REPO:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, check=True).stdout
        names = [name for name in listed.decode().split("\0") if name]
    else:
        names = [str(path.relative_to(source)) for path in source.rglob("*") if path.is_file()]
    patterns = dockerignore_patterns()
    for name in names:
        path = source / name
        if not path.is_file() or dockerignored(name, patterns):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def tiny_image_params(tree: Path, fixtures: Path) -> None:
    """params.yaml of `tree` for a few dozen random 28x28 images and a 2-update pretraining."""
    fixtures.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 8)):
        _write_idx(fixtures / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(fixtures / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    params = yaml.safe_load((tree / "params.yaml").read_text())
    params["data"]["image"].update(fashion_mnist_dir=str(fixtures), train_size=40, valid_size=8, test_size=0,
                                   shard_size=16)
    params["pretrain"]["image"].update(batch_size=4, max_steps=2, warmup_steps=1, checkpoint_every=2,
                                       log_every=1)
    (tree / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tool_env(tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This interpreter's bin/ first on PATH (dvc, d2v), no launcher or AWS settings of the caller."""
    drop = ("AWS_ENDPOINT_URL", "D2V_", "PET_", "LOCAL_RANK", "TORCHELASTIC_", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1",
               GX_ANALYTICS_ENABLED="false", DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
               OMP_NUM_THREADS="1", CI="true", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def sh(cwd: Path, env: Mapping[str, str], *cmd: str, timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def local_pod(container: Mapping[str, Any], *, tree: Path, volume: Path, index: int,
              secret: Mapping[str, str], base_env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `container` (from a rendered manifest) run as pod number `index`."""
    command = list(container["command"])
    assert command[: len(TINI_PREFIX)] == TINI_PREFIX, command
    assert command[len(TINI_PREFIX):] == ["d2v-pod"], command
    env = {**base_env, "D2V_ROOT": str(tree), **secret}  # D2V_ROOT: the image's ENV
    for item in container.get("env", []):
        if "value" in item:
            value = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == COMPLETION_INDEX:
            value = str(index)
        else:
            raise AssertionError(f"no local stand-in for {item}")
        env[item["name"]] = value.replace(VOLUME_MOUNT, str(volume))
    mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
    assert VOLUME_MOUNT in mounts, f"the container mounts no volume at {VOLUME_MOUNT}: {sorted(mounts)}"
    return [sys.executable, str(ENTRYPOINT), *container["args"]], env
