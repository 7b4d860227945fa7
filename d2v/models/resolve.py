"""Resolve the spec that a model is built from, and say which layer set each field.

Layers, each a nested mapping of spec fields applied in turn (later wins):
  released  the released base configuration (`released.py`)
  preset    the size preset's changes (`presets.py`)
  data      the prepared data's shape: image size and channels, text vocabulary (its meta.json)
  params    `model.<modality>.overrides` in params.yaml
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from d2v.config import ModelChoice, to_mapping, with_overrides
from d2v.core.spec import Data2VecSpec
from d2v.errors import ConfigError
from d2v.models.presets import preset_changes
from d2v.models.released import released_spec


@dataclass(frozen=True, kw_only=True)
class DataShape:
    """What the prepared data fixes about a model; None = not known (the preset's value stays)."""

    image_size: int | None = None
    channels: int | None = None
    vocab_size: int | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], source: str = "meta.json") -> "DataShape":
        """From a prepared modality's meta.json (image: height, width, channels; text: vocab_size)."""
        height, width = meta.get("height"), meta.get("width")
        if height != width:
            raise ConfigError(f"{source}: images are {height} x {width}; d2v's image models need square images")
        return cls(
            image_size=None if height is None else int(height),
            channels=None if meta.get("channels") is None else int(meta["channels"]),
            vocab_size=None if meta.get("vocab_size") is None else int(meta["vocab_size"]),
        )

    def changes(self, modality: str) -> dict[str, Any]:
        """The spec fields this shape sets for `modality`, as a nested mapping."""
        if modality == "image":
            front = {"image_size": self.image_size, "in_chans": self.channels}
            return {"image": {k: v for k, v in front.items() if v is not None}} if any(front.values()) else {}
        if modality == "text" and self.vocab_size is not None:
            return {"text": {"vocab_size": self.vocab_size}}
        return {}


@dataclass(frozen=True)
class ResolvedSpec:
    """A resolved spec and, for every leaf field (dotted path), the layer that set it."""

    spec: Data2VecSpec
    set_by: dict[str, str] = field(default_factory=dict)


def resolve_spec(modality: str, choice: ModelChoice, data: DataShape | None = None) -> ResolvedSpec:
    """The spec pretraining builds for `modality`: released -> preset -> data -> params overrides.

    With `init_from`, the imported checkpoint's spec replaces released -> preset, the prepared data
    must have its shape, and the params overrides still apply on top."""
    if choice.init_from is not None:
        spec = _init_from_spec(modality, choice, data or DataShape())
        set_by = {path: "init_from" for path in _leaf_paths(to_mapping(spec))}
        layers = [("params", choice.overrides, f"model.{modality}.overrides")]
    else:
        spec = released_spec(modality, choice.version)
        set_by = {path: "released" for path in _leaf_paths(to_mapping(spec))}
        layers = [
            (f"preset {choice.preset}", preset_changes(modality, choice.version, choice.preset), f"preset {choice.preset!r}"),
            ("data", (data or DataShape()).changes(modality), "prepared data"),
            ("params", choice.overrides, f"model.{modality}.overrides"),
        ]
    for name, changes, path in layers:
        if not changes:
            continue
        spec = with_overrides(spec, changes, path=path)
        set_by.update({leaf: name for leaf in _leaf_paths(changes)})
    return ResolvedSpec(spec, set_by)


def model_spec(modality: str, choice: ModelChoice, data: DataShape | None = None) -> Data2VecSpec:
    """The resolved spec alone (see `resolve_spec`)."""
    return resolve_spec(modality, choice, data).spec


def fingerprint_preset(choice: ModelChoice) -> str:
    """The preset name checkpoint fingerprints record: "imported" for a model built with init_from."""
    if choice.init_from is not None:
        from d2v.interop.init_from import IMPORTED_PRESET

        return IMPORTED_PRESET
    return choice.preset


def _init_from_spec(modality: str, choice: ModelChoice, data: DataShape) -> Data2VecSpec:
    from d2v.interop.init_from import stored_spec  # reads a checkpoint: only when init_from is set

    key = f"model.{modality}.init_from"
    spec = stored_spec(choice.init_from or "")
    if spec.modality != modality:
        raise ConfigError(f"{key}: {choice.init_from} holds a {spec.modality} model, not {modality}")
    if spec.version != choice.version:
        raise ConfigError(
            f"model.{modality}.version: {choice.version}, but {key} ({choice.init_from}) is data2vec "
            f"{spec.version}.0 (set version: {spec.version})"
        )
    front = to_mapping(getattr(spec, modality))
    for field_name, value in data.changes(modality).get(modality, {}).items():
        if front.get(field_name) != value:
            raise ConfigError(
                f"{key}: the imported model has {modality}.{field_name}={front.get(field_name)}, "
                f"the prepared data {value}: prepare data of the model's shape (data.{modality})"
            )
    return spec


def _leaf_paths(tree: Any, prefix: str = "") -> list[str]:
    if isinstance(tree, Mapping):
        return [p for key, value in tree.items() for p in _leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]
