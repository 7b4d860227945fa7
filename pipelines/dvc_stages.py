"""The DVC side of the pipelines, Prefect-free: which stages exist, `dvc repro`, what it ran.

Stage lists are names as written in dvc.yaml: a `foreach` group name (`pretrain`) expands to its
instances for the chosen modalities (`pretrain@image`), a plain stage (`tokenize`, `report`) stays
as it is. New stages are picked up by naming them in a flow parameter; no code change.

Prefect-free on purpose (pipelines/flows/decision.py and tests use it without a Prefect import);
the Prefect tasks around these are in pipelines/flows/dvc_tasks.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from d2v.errors import D2VError
from d2v.layout import Layout

# `dvc repro` prints this line before it runs a stage's command (and "Stage '...' didn't change,
# skipping" for one that is up to date).
_RUNNING_STAGE = re.compile(r"^Running stage '([^']+)':")


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


def repro_command(targets: Sequence[str], force: bool = False, single_item: bool = False) -> list[str]:
    """`dvc repro [--force] [--single-item] <targets>`: runs only what `dvc status` says is stale."""
    return ["dvc", "repro", *(["--force"] if force else []), *(["--single-item"] if single_item else []),
            *targets]


def reproduced_stages(output_lines: Iterable[str]) -> list[str]:
    """The stages a `dvc repro` ran (not those it skipped as up to date), from its output."""
    found = (_RUNNING_STAGE.match(line.strip()) for line in output_lines)
    return [match.group(1) for match in found if match]


def prepared_data_versions(root: Path, layout: Layout, modalities: Sequence[str]) -> dict[str, str]:
    """md5 that dvc.lock records for each modality's prepared data: the data version a model saw."""
    lock_path = root / layout.dvc_lock
    if not lock_path.is_file():
        return {}
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    wanted = {layout.prepared(m).as_posix(): m for m in modalities}
    versions: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            modality = wanted.get(str(out.get("path", "")).rstrip("/"))
            if modality is not None and out.get("md5"):
                versions[modality] = str(out["md5"])
    return versions


def read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise D2VError(f"{path}: not found (did its stage run?)") from None
    except json.JSONDecodeError as exc:
        raise D2VError(f"{path}: not valid JSON: {exc}") from None


__all__ = ["available_stages", "expand_stages", "prepared_data_versions", "read_json", "repro_command",
           "reproduced_stages", "stage_command"]
