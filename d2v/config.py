"""Typed, frozen views of params.yaml.

`load_params()` turns the YAML tree into frozen dataclasses and fails loudly, naming the dotted key
path, on unknown keys, missing keys and wrong types. Library functions receive only their slice
(`params.model.image`, never the whole tree).

The same strict conversion (`from_mapping`) builds any config dataclass from a plain mapping, and
`with_overrides` applies a nested override mapping to an existing dataclass; model presets use it so
that `model.<modality>.overrides` is checked exactly like the rest of params.yaml.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from d2v.artifacts.config import ArtifactsConfig
from d2v.data.config import DataConfig
from d2v.eval.config import EvaluateConfig
from d2v.errors import ConfigError
from d2v.layout import PARAMS_FILE
from d2v.train.config import PretrainConfig

T = TypeVar("T")

DEFAULT_PARAMS_PATH = PARAMS_FILE  # d2v/layout.py


# --------------------------------------------------------------------------------------------------
# params.yaml schema. Later stages add their sections here (one dataclass per section).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """Which data2vec model to build for one modality: version, size preset, field overrides."""

    version: Literal[1, 2]
    preset: str
    # Nested mapping merged onto the preset's Data2VecSpec and checked field by field (d2v.models).
    overrides: dict[str, Any] = field(default_factory=dict)
    # A checkpoint written by `d2v import` (docs/interop.md): its architecture replaces the preset's
    # and pretraining starts from its weights. None: the preset, from random init.
    init_from: str | None = None


@dataclass(frozen=True)
class ModelsConfig:
    image: ModelChoice
    speech: ModelChoice
    text: ModelChoice


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    seed: int
    model: ModelsConfig
    data: DataConfig
    pretrain: PretrainConfig
    evaluate: EvaluateConfig
    artifacts: ArtifactsConfig


# --------------------------------------------------------------------------------------------------
# Strict conversion
# --------------------------------------------------------------------------------------------------


def load_params(path: str | Path = DEFAULT_PARAMS_PATH) -> Params:
    """Read and validate params.yaml; raise ConfigError naming the file and the dotted key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    try:
        return from_mapping(Params, tree if tree is not None else {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def from_mapping(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from `data`, checking every key and type; `path` prefixes errors."""
    return _convert(cls, data, path)


def with_overrides(obj: T, overrides: Mapping[str, Any], path: str = "overrides") -> T:
    """Return a copy of dataclass `obj` with a nested override mapping applied and re-validated."""
    merged = _deep_merge(to_mapping(obj), overrides, path, type(obj))
    return from_mapping(type(obj), merged, path)


def section_type(cls: type, key: str, path: str = "") -> type | None:
    """The dataclass a field of section `cls` holds (a nested section), or None for a value field.

    Raises ConfigError naming the dotted key when `cls` has no field `key`."""
    known = [f.name for f in dataclasses.fields(cls)]
    if key not in known:
        raise ConfigError(f"{_join(path, key)}: unknown key (expected one of: {', '.join(known)})")
    return _dataclass_in(get_type_hints(cls)[key])


def to_mapping(obj: Any) -> Any:
    """Dataclass -> plain dict/list tree (tuples become lists), suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj


def _deep_merge(base: Any, overrides: Mapping[str, Any], path: str, cls: type) -> dict[str, Any]:
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_describe(overrides)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    merged = dict(base)
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"{_join(path, key)}: unknown key (expected one of: {', '.join(known)})")
        sub = _dataclass_in(hints[key])
        if sub is not None and isinstance(base[key], Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(base[key], value, _join(path, key), sub)
        else:
            merged[key] = value
    return merged


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass type of a field annotated `DC` or `DC | None`, else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1 and dataclasses.is_dataclass(members[0]):
            return members[0]
    return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path)
    if origin is Literal:
        allowed = get_args(tp)
        # bool is an int subclass: never let True match Literal[1].
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        raise ConfigError(f"{path}: expected one of {list(allowed)}, got {_describe(value)}")
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path)
    if origin in (tuple, list):
        return _convert_sequence(tp, origin, value, path)
    if origin is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return {_convert(key_tp, k, path): _convert(val_tp, v, _join(path, k)) for k, v in value.items()}
    return _convert_scalar(tp, value, path)


def _convert_dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, Mapping):
        where = path or "params"
        raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    for key in value:
        if key not in fields:
            raise ConfigError(
                f"{_join(path, str(key))}: unknown key (expected one of: {', '.join(fields)})"
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)}: missing key")
    return cls(**kwargs)


def _convert_union(tp: Any, value: Any, path: str) -> Any:
    args = get_args(tp)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got None")
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:  # Optional[X]: X's own error message is the useful one
        return _convert(members[0], value, path)
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, path)
        except ConfigError:
            continue
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")


def _convert_sequence(tp: Any, origin: type, value: Any, path: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
    args = get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, _join(path, i)) for i, (a, v) in enumerate(zip(args, value)))
    item_tp = args[0] if args else Any
    items = [_convert(item_tp, v, _join(path, i)) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    else:
        raise TypeError(f"config type {tp!r} at {path} is not supported")  # a bug in the schema
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


__all__ = [
    "ConfigError",
    "ModelChoice",
    "ModelsConfig",
    "Params",
    "from_mapping",
    "load_params",
    "to_mapping",
    "with_overrides",
]
