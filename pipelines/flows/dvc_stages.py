"""The DVC side of the flows: which stages exist, their commands, `dvc repro` and `dvc commit`.

Stage lists are names as written in dvc.yaml: a `foreach` group name (`pretrain`) expands to its
instances for the chosen modalities (`pretrain@image`), a plain stage (`tokenize`, `report`) stays
as it is. New stages are picked up by naming them in a flow parameter; no code change.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml
from prefect import task
from prefect.cache_policies import NONE

from d2v.errors import D2VError
from pipelines.flows.logs import run_logger
from pipelines.flows.commands import run_streaming


def available_stages(root: Path) -> list[str]:
    """Every stage address in root/dvc.yaml, resolved by DVC (foreach expanded): `pretrain@image`."""
    from dvc.repo import Repo  # imported lazily: ~1 s, and only flows that touch DVC need it

    with Repo(str(root)) as repo:
        return [stage.addressing for stage in repo.index.stages]


def expand_stages(names: Iterable[str], modalities: Sequence[str], available: Sequence[str]) -> list[str]:
    """Stage names -> DVC targets for `modalities`, in the order given; unknown names are an error."""
    targets: list[str] = []
    for name in names:
        if "@" in name or name in available:
            found = [name] if name in available else []
        else:
            found = [f"{name}@{m}" for m in modalities if f"{name}@{m}" in available]
        if not found:
            raise D2VError(f"dvc.yaml: no stage {name!r} for modalities {list(modalities)} "
                           f"(stages: {', '.join(available) or 'none'})")
        targets.extend(t for t in found if t not in targets)
    return targets


def stage_command(root: Path, target: str) -> str:
    """The `cmd` of one stage instance, as DVC resolves it (so flows never restate commands)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = repo.stage.collect(target)
    if len(stages) != 1 or not getattr(stages[0], "cmd", None):
        raise D2VError(f"dvc.yaml: {target!r} is not a single stage with a command")
    cmd = stages[0].cmd
    return cmd if isinstance(cmd, str) else " && ".join(cmd)


def d2v_args(cmd: str, target: str) -> list[str]:
    """`d2v pretrain image` -> ['pretrain', 'image'], for launching the same CLI under torchrun."""
    words = shlex.split(cmd)
    if not words or words[0] != "d2v" or any(w in {"&&", "|", ";"} for w in words):
        raise D2VError(f"dvc.yaml: stage {target!r} runs {cmd!r}; expected one `d2v ...` command "
                       "to launch it under torchrun")
    return words[1:]


def prepared_data_versions(root: Path, prepared_dir: str, modalities: Sequence[str]) -> dict[str, str]:
    """md5 that dvc.lock records for data/prepared/<modality>: the data version a model saw."""
    lock_path = root / "dvc.lock"
    if not lock_path.is_file():
        return {}
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    wanted = {f"{prepared_dir.rstrip('/')}/{m}": m for m in modalities}
    versions: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            modality = wanted.get(str(out.get("path", "")).rstrip("/"))
            if modality is not None and out.get("md5"):
                versions[modality] = str(out["md5"])
    return versions


@task(retries=2, retry_delay_seconds=10, cache_policy=NONE, task_run_name="dvc repro {targets}")
def dvc_repro(root: str, targets: list[str], force: bool = False, single_item: bool = False) -> None:
    """`dvc repro [--force] [--single-item] <targets>`; retried: downloads fail transiently."""
    logger = run_logger()
    cmd = ["dvc", "repro", *(["--force"] if force else []), *(["--single-item"] if single_item else []),
           *targets]
    logger.info("$ %s", " ".join(cmd))
    run_streaming(cmd, Path(root), logger.info)


@task(cache_policy=NONE, task_run_name="dvc commit {targets}")
def dvc_commit(root: str, targets: list[str]) -> None:
    """Record outputs produced outside `dvc repro` in dvc.lock, exactly as a repro would."""
    logger = run_logger()
    cmd = ["dvc", "commit", "--force", *targets]
    logger.info("$ %s", " ".join(cmd))
    run_streaming(cmd, Path(root), logger.info)


def read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise D2VError(f"{path}: not found (did its stage run?)") from None
    except json.JSONDecodeError as exc:
        raise D2VError(f"{path}: not valid JSON: {exc}") from None


__all__ = ["available_stages", "d2v_args", "dvc_commit", "dvc_repro", "expand_stages",
           "prepared_data_versions", "read_json", "stage_command"]
