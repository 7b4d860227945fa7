"""Paper-scale run profiles: one YAML file per released data2vec run, under `profiles/`.

A profile is a partial params.yaml (its `params:` tree) plus what a user needs to plan the run:
the modality, the world size the released recipe was tuned for, the sources of every value and the
places where d2v cannot follow the released run. `d2v profile apply <name>` writes it into
params.yaml (d2v.profiles.apply); this module only finds, reads and checks profile files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from d2v import MODALITIES
from d2v.errors import ConfigError

PROFILE_SUFFIX = ".yaml"
_REQUIRED = ("name", "modality", "summary", "reference_gpus", "sources", "deviations", "params")


@dataclass(frozen=True)
class Profile:
    """One profile file, checked for shape (the params tree is checked when merged: see apply)."""

    path: Path
    name: str
    modality: str
    summary: str
    # The released run's world size: its per-GPU batches are the ones in `params`; on fewer GPUs
    # `apply --gpus N` raises grad_accum so the effective batch stays the released one.
    reference_gpus: int
    sources: dict[str, str]
    deviations: tuple[str, ...]
    params: dict[str, Any]


def profiles_dir(params_path: str | Path) -> Path:
    """Where profiles live: `profiles/` beside params.yaml (the repository root)."""
    return Path(params_path).resolve().parent / "profiles"


def list_profiles(directory: Path) -> list[Profile]:
    """Every profile under `directory`, by name."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no profiles directory")
    return [read_profile(path) for path in sorted(directory.glob(f"*{PROFILE_SUFFIX}"))]


def find_profile(name_or_path: str, directory: Path) -> Profile:
    """A profile by name (profiles/<name>.yaml) or by the path of any profile file."""
    candidate = Path(name_or_path)
    if candidate.suffix == PROFILE_SUFFIX and candidate.is_file():
        return read_profile(candidate)
    path = directory / f"{name_or_path}{PROFILE_SUFFIX}"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(directory.glob(f"*{PROFILE_SUFFIX}"))) or "none"
        raise ConfigError(f"profile {name_or_path!r}: no {path} (known profiles: {known})")
    return read_profile(path)


def read_profile(path: Path) -> Profile:
    """Read one profile file; errors name the file and the field."""
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(_REQUIRED)}")
    unknown = sorted(set(tree) - set(_REQUIRED))
    missing = [key for key in _REQUIRED if key not in tree]
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (expected one of: {', '.join(_REQUIRED)})")
    if missing:
        raise ConfigError(f"{path}: {missing[0]}: missing key")
    profile = Profile(
        path=path,
        name=_typed(path, tree, "name", str),
        modality=_typed(path, tree, "modality", str),
        summary=_typed(path, tree, "summary", str),
        reference_gpus=_typed(path, tree, "reference_gpus", int),
        sources={str(k): str(v) for k, v in _typed(path, tree, "sources", dict).items()},
        deviations=tuple(str(d) for d in _typed(path, tree, "deviations", list)),
        params=_typed(path, tree, "params", dict),
    )
    if profile.name != path.stem:
        raise ConfigError(f"{path}: name: {profile.name!r} differs from the file name {path.stem!r}")
    if profile.modality not in MODALITIES:
        raise ConfigError(f"{path}: modality: {profile.modality!r} (expected one of: {', '.join(MODALITIES)})")
    if profile.reference_gpus < 1:
        raise ConfigError(f"{path}: reference_gpus: expected >= 1, got {profile.reference_gpus}")
    return profile


def as_dict(profile: Profile) -> dict[str, Any]:
    """JSON-ready view (the path as a string)."""
    return {**dataclasses.asdict(profile), "path": str(profile.path), "deviations": list(profile.deviations)}


def _typed(path: Path, tree: Mapping[str, Any], key: str, kind: type) -> Any:
    value = tree[key]
    # bool is an int: `reference_gpus: true` is a typo, not one GPU.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: {key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value
