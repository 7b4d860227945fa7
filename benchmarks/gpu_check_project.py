"""Throw-away d2v projects for benchmarks/gpu_check.py: a params.yaml, prepared images, real `d2v` runs.

A project is a directory laid out as `dvc repro` runs in (params.yaml whose data, models and metrics
paths are the layout's relative defaults), so every `d2v` command runs with `cwd=<project>` and
nothing in the repository's data/, models/ or metrics/ is touched. Its params are the repository's
params.yaml with the image data, the image recipe and the image evaluation shrunk to seconds; the
image source is the embedded Fashion-MNIST or, where that Debian package is missing (a bare GPU box),
deterministic random IDX files of its format (tests/faults/process_project.py's `image_source`).

Images only: the image stage prepares in about a second from an embedded or generated source,
whereas speech and text need their packages' corpora and a tokenizer run. The pretraining and
evaluation code under test (loop, checkpoint, DDP, resume, evaluation device) is the same for
every modality.
"""

from __future__ import annotations

import copy
import math
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "tests" / "faults", REPO / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from process_control import d2v_env, finish, kill_when, reap  # noqa: E402  (tests/faults is not a package)
from process_project import image_source  # noqa: E402

D2V = [sys.executable, "-m", "d2v.cli"]
MODALITY = "image"
PREPARED = Path("data/prepared") / MODALITY
CHECKPOINT = Path("models") / MODALITY / "checkpoint.pt"
PRETRAIN_LOG = Path("metrics/pretrain") / MODALITY
PLOTS = PRETRAIN_LOG / "plots" / "metrics"
EVAL_JSON = Path("metrics/eval") / f"{MODALITY}.json"

# 400 training images: enough for 25 batches of 16 before an epoch ends, prepared in about a second.
DATA = {"train_size": 400, "valid_size": 100, "test_size": 200, "shard_size": 200}
# The recipe's fixed part; steps, batch and checkpoint interval are per check.
RECIPE = {"warmup_steps": 1, "log_every": 1, "keep_last": 1, "num_workers": 0, "compile": False}
# Seconds on 2 CPU cores: a probe of 5 epochs on 150 images and one fine-tuning epoch on 64.
EVALUATION = {"n_test": 100, "linear_probe": {"epochs": 5, "n_train": 150, "n_valid": 50, "weight_decays": [0.01]},
              "finetune": {"epochs": 1, "n_train": 64, "batch_size": 32}}


def merge(tree: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`tree` with `overrides` merged in, nested mappings key by key (a new tree)."""
    out = copy.deepcopy(tree)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def project_params(*, seed: int = 0, image: Mapping[str, Any] | None = None, model: Mapping[str, Any] | None = None,
                   recipe: Mapping[str, Any] | None = None, evaluate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The repository's params with the image pipeline shrunk; the other modalities stay as they are
    (every stage validates the whole file)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    return merge(params, {
        "seed": seed,
        "data": {"image": {"source": "embedded", "fashion_mnist_dir": str(image_source()), "image_size": 28,
                           "channels": 1, **DATA, **(image or {})}},
        # Pinned, not read from params.yaml: the checks must not change with the demo's model choice.
        "model": {"image": {"version": 2, "preset": "tiny", "overrides": {}, "init_from": None, **(model or {})}},
        "pretrain": {"seed": None, "image": {**RECIPE, **(recipe or {})}},
        # In this process, not in forked side-by-side workers: a forked child cannot use CUDA.
        "evaluate": merge({"side_by_side": False, "image": EVALUATION}, evaluate or {}),
    })


def write_params(root: Path, params: Mapping[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False), encoding="utf-8")
    return root


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """process_control's d2v environment (no launcher variables leaking in, one intra-op thread)."""
    return {**d2v_env(), **(extra or {})}


def start(args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([*D2V, *args], cwd=cwd, env=environment(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run(args: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None, timeout: float = 300) -> str:
    """`d2v <args>` to completion; its output. Raises with the output's tail if it fails."""
    proc = start(args, cwd, env)
    try:
        output = finish(proc, timeout)
    finally:
        reap(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"d2v {' '.join(args)} exited {proc.returncode}:\n{output[-3000:]}")
    return output


def prepare(root: Path, params: Mapping[str, Any], timeout: float = 120) -> Path:
    """A project at `root` with its images prepared (`d2v data prepare image`)."""
    write_params(root, params)
    run(["data", "prepare", MODALITY], root, timeout=timeout)
    return root


def clone(prepared: Path, root: Path, params: Mapping[str, Any]) -> Path:
    """A new project at `root` with `params` and a copy of `prepared`'s prepared images (the data
    section must be the same: the run identity covers the data)."""
    write_params(root, params)
    shutil.copytree(prepared / PREPARED, root / PREPARED)
    return root


def step_values(root: Path, metric: str) -> list[float]:
    """One value per logged update of `metric` (DVCLive: `step<TAB>value` lines after a header)."""
    path = root / PLOTS / f"{metric}.tsv"
    if not path.is_file():
        return []
    values = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        _, value = line.split("\t")
        values.append(float(value))
    return values


def steps_logged(root: Path) -> int:
    return len(step_values(root, "samples_per_s"))  # the last metric each update writes


def final_weights(root: Path) -> tuple[int, dict[str, Any]]:
    """The checkpoint's step and model state (student + teacher)."""
    from d2v.train.checkpoint import load_checkpoint

    payload = load_checkpoint(root / CHECKPOINT)
    return int(payload["step"]), payload["model"]


def max_abs_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, bool]:
    """Largest element-wise |a - b| over two state dicts, and whether every tensor is bit-equal."""
    import torch

    if list(a) != list(b):
        return math.inf, False
    worst, exact = 0.0, True
    for name in a:
        x, y = a[name], b[name]
        if not torch.is_tensor(x):
            exact &= x == y
            continue
        exact &= torch.equal(x, y)
        if x.is_floating_point():
            worst = max(worst, float((x.double() - y.double()).abs().max()) if x.numel() else 0.0)
        elif not torch.equal(x, y):
            worst = math.inf
    return worst, exact


def kill_after_checkpoint(proc: subprocess.Popen, root: Path, first_step: int, timeout: float) -> int | None:
    """Freeze `proc` in slices once it nears its first checkpoint, SIGKILL it the moment
    checkpoint.pt exists (renamed into place complete); the updates logged then, or None if it
    exited first. process_control.kill_when: a poll from outside would let a fast GPU run finish."""
    def written() -> dict[str, int] | None:  # truthy once the checkpoint is there, evaluated while frozen
        return {"steps": steps_logged(root)} if (root / CHECKPOINT).is_file() else None

    seen = kill_when(proc, written, armed=lambda: steps_logged(root) >= first_step - 1, timeout=timeout)
    return None if seen is None else seen["steps"]


def cpu_only() -> dict[str, str]:
    """Hide the GPUs: d2v's init_distributed takes CUDA whenever it is visible (gloo needs CPU here)."""
    return {"CUDA_VISIBLE_DEVICES": ""}


__all__ = ["CHECKPOINT", "EVAL_JSON", "MODALITY", "PREPARED", "REPO", "clone", "cpu_only", "environment",
           "final_weights", "kill_after_checkpoint", "max_abs_difference", "merge", "prepare", "project_params",
           "run", "start", "step_values", "steps_logged", "write_params"]
