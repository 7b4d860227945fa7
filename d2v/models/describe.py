"""The resolved model as data and as text: what `d2v model show <modality>` prints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from d2v.config import ModelChoice, to_mapping
from d2v.models.build import build_model
from d2v.models.resolve import DataShape, resolve_spec


def describe_model(modality: str, choice: ModelChoice, data: DataShape, data_source: str) -> dict[str, Any]:
    """Every field of the spec pretraining builds, the layer that set it, and the parameter counts."""
    resolved = resolve_spec(modality, choice, data)
    # Built for real on the CPU (the log-mel front end cannot be built on the meta device): about a
    # second for a base model, a few for a large one.
    model = build_model(resolved.spec)
    student = sum(p.numel() for p in model.student_encoder().parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "modality": modality,
        "version": choice.version,
        "preset": choice.preset,
        "data_shape_from": data_source,
        "parameters": {"student_encoder": student, "trainable": trainable},
        "spec": to_mapping(resolved.spec),
        "set_by": resolved.set_by,
    }


def render_description(description: Mapping[str, Any]) -> str:
    """Aligned `field = value  [layer]` lines, one per spec field, under a short header."""
    params = description["parameters"]
    lines = [
        f"data2vec {description['version']}.0 {description['modality']}, preset {description['preset']}",
        f"data shape from: {description['data_shape_from']}",
        f"parameters: student encoder {params['student_encoder'] / 1e6:.2f} M, "
        f"trainable {params['trainable'] / 1e6:.2f} M",
        "layers: released (base config of the released code) -> preset -> data -> params (overrides)",
        "",
    ]
    leaves = _leaves(description["spec"])
    width = max(len(path) for path, _ in leaves)
    value_width = min(max(len(_format(value)) for _, value in leaves), 40)
    set_by = description["set_by"]
    for path, value in leaves:
        lines.append(f"{path:<{width}} = {_format(value):<{value_width}}  [{_layer(set_by, path)}]")
    return "\n".join(lines)


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), tree)]


def _layer(set_by: Mapping[str, str], path: str) -> str:
    # A section set as a whole (e.g. conv_layers, a list) is recorded under its own path.
    while path and path not in set_by:
        path = path.rpartition(".")[0]
    return set_by.get(path, "released")


def _format(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)
