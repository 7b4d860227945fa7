"""How the reported run was produced: git state, dvc.lock output hashes, packages, hardware, seeds.

Git state and core package versions come from d2v.artifacts.provenance (one implementation); this
module adds what only the report shows: every output hash in dvc.lock, and the machine's hardware.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from d2v import cpu_limit
from d2v.artifacts.provenance import git_state, package_versions
from d2v.config import Params
from d2v.errors import D2VError

# Beyond artifacts.provenance.TRACKED_PACKAGES: the numerical stack the results depend on.
EXTRA_PACKAGES = ("numpy", "torchvision", "torchaudio", "sentencepiece", "great-expectations", "matplotlib")


@dataclass(frozen=True)
class LockedOutput:
    stage: str
    path: str
    md5: str
    size: int | None
    nfiles: int | None


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    logical_cores: int
    memory_gib: float | None
    gpus: tuple[str, ...]
    cpu_limit_cores: float | None = None  # a cgroup CPU limit (container --cpus); None: none found


@dataclass(frozen=True)
class RunProvenance:
    git_commit: str | None
    git_dirty: bool | None
    locked_outputs: tuple[LockedOutput, ...]  # () when there is no dvc.lock
    versions: dict[str, str | None]
    hardware: Hardware
    seeds: dict[str, int]


def read_locked_outputs(lock_path: Path, skip_stages: frozenset[str] = frozenset()) -> tuple[LockedOutput, ...]:
    """Every stage output recorded in dvc.lock (data, models, metrics), in the file's order."""
    if not lock_path.is_file():
        return ()
    try:
        tree = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise D2VError(f"{lock_path}: not valid YAML: {exc}".replace("\n", " ")) from None
    stages = tree.get("stages", {}) if isinstance(tree, dict) else {}
    found = []
    for stage, entry in stages.items():
        if stage.split("@")[0] in skip_stages or not isinstance(entry, dict):
            continue
        for out in entry.get("outs", []) or []:
            digest = out.get("md5") or out.get("hash") or ""
            found.append(LockedOutput(stage, str(out.get("path", "")), str(digest), out.get("size"), out.get("nfiles")))
    return tuple(found)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # no /proc (not Linux): fall back to platform
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass  # unknown on this platform: the report says so
    return None


def _gpus() -> tuple[str, ...]:
    """GPU names from nvidia-smi when present (importing torch here would cost seconds)."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip()) if done.returncode == 0 else ()


def detect_hardware() -> Hardware:
    return Hardware(cpu_model=_cpu_model(), logical_cores=os.cpu_count() or 0, memory_gib=_memory_gib(), gpus=_gpus(),
                    cpu_limit_cores=cpu_limit.limit_cores())


def all_versions() -> dict[str, str | None]:
    return package_versions(extra=EXTRA_PACKAGES)


def seeds_of(params: Params) -> dict[str, int]:
    """Every seed the pipeline used, by its params.yaml key (pretrain.seed resolved when null)."""
    return {
        "seed": params.seed,
        "pretrain.seed (resolved)": params.pretrain.resolve_seed(params.seed),
        "evaluate.image.seed": params.evaluate.image.seed,
        "evaluate.text.seed": params.evaluate.text.seed,
        "evaluate.speech.seed": params.evaluate.speech.seed,
    }


def collect_run_provenance(params: Params, root: Path, skip_stages: frozenset[str] = frozenset({"report"})) -> RunProvenance:
    commit, dirty = git_state(root)
    return RunProvenance(
        git_commit=commit,
        git_dirty=dirty,
        locked_outputs=read_locked_outputs(root / "dvc.lock", skip_stages),
        versions=all_versions(),
        hardware=detect_hardware(),
        seeds=seeds_of(params),
    )
