"""README.md model card of an exported model: data, recipe, git commit, evaluation table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d2v.config import to_mapping
from d2v.core.spec import Data2VecSpec


@dataclass(frozen=True)
class CardInfo:
    """What a model card says about one exported checkpoint."""

    spec: Data2VecSpec
    checkpoint: str
    step: int
    fingerprint: dict[str, Any]
    export_format: str  # "hf" | "safetensors"
    data: dict[str, Any]  # params data.<modality> (+ the prepared meta.json's path when present)
    recipe: dict[str, Any]  # params model.<modality> and pretrain.<modality>
    git_commit: str | None
    git_dirty: bool | None
    eval_records: dict[str, Any] | None = None  # metrics/eval/<modality>.json, when it exists
    eval_source: str | None = None
    max_abs_difference: float | None = None  # hf: d2v vs transformers on a sample batch
    imported_from: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def render_card(info: CardInfo) -> str:
    spec = info.spec
    title = f"d2v data2vec {spec.version}.0 {spec.modality} encoder"
    lines = ["---", "library_name: transformers" if info.export_format == "hf" else "library_name: d2v",
             "tags: [data2vec, d2v, self-supervised]", "---", "", f"# {title}", ""]
    lines += _usage(info)
    lines += ["## Data", "", _json_block(info.data), ""]
    lines += ["## Recipe", "", "params.yaml at export time (`model` and `pretrain` for this modality):", "",
              _json_block(info.recipe), "", "<details><summary>the full d2v model spec</summary>", "",
              _json_block(to_mapping(spec)), "", "</details>", ""]
    lines += ["## Provenance", "", f"- checkpoint: `{info.checkpoint}` (step {info.step})",
              f"- fingerprint: `{json.dumps(info.fingerprint, sort_keys=True)}`",
              f"- git commit: `{info.git_commit or 'unknown'}`" + (" (working tree had changes)" if info.git_dirty else "")]
    if info.imported_from:
        lines.append(f"- imported from: `{json.dumps(info.imported_from, sort_keys=True)}`")
    if info.max_abs_difference is not None:
        lines.append(f"- max |d2v - transformers| on a sample batch at export: {info.max_abs_difference:.3g}")
    lines.append("")
    lines += _eval_table(info.eval_records, info.eval_source)
    if info.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in info.notes], ""]
    return "\n".join(lines)


def _usage(info: CardInfo) -> list[str]:
    if info.export_format == "hf":
        return ["The student encoder of a d2v checkpoint, as a transformers model (last hidden states equal "
                "d2v's within float rounding):", "", "```python", "from transformers import AutoModel",
                'model = AutoModel.from_pretrained("<this directory>")', "```", ""]
    return ["The student encoder of a d2v checkpoint: `model.safetensors` holds the front end and encoder "
            "weights under d2v's names, `d2v_spec.json` the spec to build it with (`d2v.models.build_model`).", ""]


def _eval_table(records: dict[str, Any] | None, source: str | None) -> list[str]:
    if not records:
        return ["## Evaluation", "", "No evaluation results were found for this modality at export time.", ""]
    lines = ["## Evaluation", "", f"From `{source}` (pretrained vs random init under the same code, data and seed):", "",
             "| task | metric | pretrained | random init | input baseline | delta (95 % interval) |",
             "|---|---|---|---|---|---|"]
    for task, r in records.items():
        interval = ""
        if r.get("delta_ci95_low") is not None and r.get("delta_ci95_high") is not None:
            interval = f" ({r['delta_ci95_low']:+.4f} … {r['delta_ci95_high']:+.4f})"
        baseline = "" if r.get("input_baseline") is None else f"{r['input_baseline']:.4f}"
        lines.append(f"| {task} | {r.get('metric', '')} | {_num(r.get('pretrained'))} | {_num(r.get('random_init'))} "
                     f"| {baseline} | {_signed(r.get('delta'))}{interval} |")
    return lines + [""]


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.4f}"


def _signed(value: Any) -> str:
    return "" if value is None else f"{value:+.4f}"


def _json_block(obj: Any) -> str:
    return "```json\n" + json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n```"


def read_eval_records(path: Path) -> dict[str, Any] | None:
    """metrics/eval/<modality>.json ({task: record}), or None when absent or unreadable."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return records if isinstance(records, dict) else None
