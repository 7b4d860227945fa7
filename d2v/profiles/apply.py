"""Write a profile into params.yaml: every key it sets, comments and order kept, checked first.

Merging follows params.yaml's schema (d2v.config): a mapping in the profile descends into a params
section, and anything else replaces the value, so a free-form mapping such as
`model.speech.overrides: {}` replaces the demo's overrides instead of merging into them. The result
is loaded with the strict params loader before anything is written, and written to a temporary
name then renamed, so a bad profile leaves params.yaml as it was.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from d2v.atomic import atomic_write_text
from d2v.config import Params, from_mapping, section_type
from d2v.errors import ConfigError
from d2v.profiles.catalog import Profile

# The first line of a params.yaml a profile was applied to (replaced when another is applied).
APPLIED_MARK = "# d2v profile applied:"
Keys = tuple[str, ...]


@dataclass(frozen=True)
class Change:
    key: str  # dotted
    old: Any
    new: Any


@dataclass(frozen=True)
class Plan:
    """What applying a profile does: the changed keys and the new params.yaml text."""

    profile: Profile
    gpus: int
    changes: tuple[Change, ...]
    text: str
    params: Params  # `text`, loaded by the strict params loader


def plan_profile(profile: Profile, params_path: str | Path, gpus: int | None = None) -> Plan:
    """The params.yaml that `profile` gives (on `gpus` GPUs; None = the released world size)."""
    params_path = Path(params_path)
    assignments = _assignments(profile.params, Params, "", profile)
    world = profile.reference_gpus if gpus is None else gpus
    if world != profile.reference_gpus:
        assignments.append(_grad_accum_for(profile, world))
    rt = YAML()  # round trip: keeps comments, order and quoting of everything not assigned
    rt.width = 4096  # never re-wrap the file's long comment lines
    rt.preserve_quotes = True
    rt.representer.add_representer(float, _represent_float)
    doc = rt.load(params_path.read_text(encoding="utf-8"))
    changes = []
    for keys, value in assignments:
        parent = _parent(doc, keys, params_path)
        old = parent.get(keys[-1])
        if _plain(old) != value:
            changes.append(Change(".".join(keys), _plain(old), value))
            parent[keys[-1]] = _styled(value)
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    body = "".join(line for line in buffer.getvalue().splitlines(keepends=True) if not line.startswith(APPLIED_MARK))
    header = f"{APPLIED_MARK} {profile.name} on {world} GPU(s), {len(changes)} keys (`d2v profile show {profile.name}`); comments below describe the embedded default\n"
    text = header + body
    try:
        params = from_mapping(Params, yaml.safe_load(text))
    except ConfigError as exc:
        raise ConfigError(f"{profile.path}: applied to {params_path}: {exc}") from None
    return Plan(profile, world, tuple(changes), text, params)


def apply_profile(profile: Profile, params_path: str | Path, gpus: int | None = None) -> Plan:
    """Plan, then write params.yaml atomically (nothing is written when the plan fails)."""
    plan = plan_profile(profile, params_path, gpus)
    atomic_write_text(params_path, plan.text)
    return plan


def _assignments(tree: Mapping[str, Any], cls: type, path: str, profile: Profile) -> list[tuple[Keys, Any]]:
    """(key path, value) for every value the profile sets, descending only into params sections."""
    out: list[tuple[Keys, Any]] = []
    for key, value in tree.items():
        dotted = f"{path}.{key}" if path else str(key)
        try:
            section = section_type(cls, str(key), path)
        except ConfigError as exc:
            raise ConfigError(f"{profile.path}: params.{exc}") from None
        if section is not None and isinstance(value, Mapping):
            out += [((str(key), *keys), v) for keys, v in _assignments(value, section, dotted, profile)]
        else:
            out.append(((str(key),), value))
    return out


def _grad_accum_for(profile: Profile, gpus: int) -> tuple[Keys, Any]:
    """Keep the released effective batch on `gpus` GPUs by accumulating more (or fewer) micro-batches."""
    recipe = profile.params.get("pretrain", {}).get(profile.modality, {})
    accum = int(recipe.get("grad_accum", 1))
    total = profile.reference_gpus * accum
    if gpus < 1 or total % gpus:
        fits = [n for n in range(1, total + 1) if total % n == 0]
        raise ConfigError(
            f"--gpus {gpus}: profile {profile.name} needs {profile.reference_gpus} GPUs x grad_accum {accum}; "
            f"the effective batch stays exact on {', '.join(map(str, fits))} GPU(s)"
        )
    return ("pretrain", profile.modality, "grad_accum"), total // gpus


def _parent(doc: Any, keys: Keys, params_path: Path) -> Any:
    node = doc
    for depth, key in enumerate(keys[:-1]):
        if not isinstance(node, Mapping) or key not in node:
            raise ConfigError(f"{params_path}: {'.'.join(keys[: depth + 1])}: missing section")
        node = node[key]
    return node


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists, for comparison and display."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _represent_float(representer: Any, value: float) -> Any:
    """Floats PyYAML reads back as floats: YAML 1.1 needs a '.' in the mantissa (5e-05 is a string)."""
    text = repr(value)
    mantissa, marker, exponent = text.partition("e")
    if marker and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _styled(value: Any) -> Any:
    """Lists and mappings written inline, as params.yaml writes its short ones."""
    if isinstance(value, Mapping):
        node = CommentedMap((k, _styled(v)) for k, v in value.items())
        node.fa.set_flow_style()
        return node
    if isinstance(value, list):
        seq = CommentedSeq(_styled(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value
