"""`d2v export`: a d2v checkpoint's student encoder as a transformers model or as d2v-native safetensors.

The student (front end + Transformer encoder) is what downstream tasks fine-tune; the EMA teacher,
the regression head and the v2 decoder are pretraining machinery and are not exported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from d2v.atomic import atomic_dir
from d2v.config import ModelChoice, to_mapping
from d2v.core.data2vec import Data2Vec
from d2v.core.spec import Data2VecSpec
from d2v.errors import D2VError
from d2v.interop.compat import HF_CLASS, check_hf_exportable
from d2v.interop.equivalence import check_equivalent
from d2v.interop.hf_config import hf_config_kwargs
from d2v.interop.hf_runtime import quiet_transformers, require_transformers
from d2v.interop.hf_weights import StateDict, WeightMismatch, to_hf_state
from d2v.interop.init_from import SOURCE_KEY, checkpoint_has_spec, spec_of_payload
from d2v.interop.model_card import CardInfo, render_card
from d2v.models import DataShape, build_model, fingerprint_preset, model_spec
from d2v.train.checkpoint import ModelFingerprint, load_checkpoint

FORMATS = ("hf", "safetensors")
WEIGHTS_NAME = "model.safetensors"
NATIVE_SPEC_NAME = "d2v_spec.json"
CARD_NAME = "README.md"
# transformers' text pooler (tanh dense on the first token) has no d2v counterpart: never written.
HF_ONLY_PREFIXES = ("pooler.",)

ResolveModel = Callable[[str], tuple[ModelChoice, DataShape]]


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: Path
    model: Data2Vec
    fingerprint: dict[str, Any]
    step: int
    imported_from: dict[str, Any] | None

    @property
    def spec(self) -> Data2VecSpec:
        return self.model.spec

    def student_state(self) -> StateDict:
        """Front end + encoder tensors, under d2v's names."""
        return {k: v for k, v in self.model.state_dict().items() if k.startswith(("frontend.", "encoder."))}


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    seconds: float
    max_abs_difference: float | None  # hf only: d2v vs the reloaded transformers model


def open_checkpoint(path: Path, resolve: ResolveModel) -> LoadedCheckpoint:
    """Load a checkpoint and rebuild its model. The spec comes from the checkpoint itself when it
    stores one (imported), else from `resolve(modality)` (params), checked against the fingerprint."""
    payload = load_checkpoint(path)
    found = dict(payload["fingerprint"])
    modality = found["modality"]
    imported_from = None
    if checkpoint_has_spec(payload):
        spec = spec_of_payload(payload, str(path))
        imported_from = payload["progress"].get(SOURCE_KEY)
    else:
        choice, shape = resolve(modality)
        spec = model_spec(modality, choice, shape)
        expected = ModelFingerprint.of(modality, choice.version, fingerprint_preset(choice), spec)
        if asdict(expected) != found:
            raise D2VError(
                f"{path}: checkpoint is for {ModelFingerprint(**found).describe()}, but params.yaml resolves "
                f"model.{modality} to {expected.describe()}: export with the params that trained it (--params)"
            )
    model = build_model(spec)
    model.load_state_dict(payload["model"])
    model.eval()
    return LoadedCheckpoint(path, model, found, int(payload.get("step", 0)), imported_from)


def export_hf(loaded: LoadedCheckpoint, out_dir: Path, card: CardInfo) -> ExportResult:
    """A transformers model directory (config.json, model.safetensors, README.md), checked: the
    saved directory is reloaded with AutoModel and must reproduce d2v's outputs."""
    start = time.perf_counter()
    spec = loaded.spec
    check_hf_exportable(spec)
    transformers = require_transformers()
    hf_model = _hf_model(transformers, loaded)
    check_equivalent(loaded.model.student_encoder(), hf_model, spec, "export")
    with atomic_dir(out_dir) as staging, quiet_transformers():  # the text pooler is reported missing: see the card
        hf_model.save_pretrained(staging)
        reloaded = transformers.AutoModel.from_pretrained(staging)
        if type(reloaded).__name__ != HF_CLASS[spec.modality]:
            raise D2VError(f"export: AutoModel loaded {type(reloaded).__name__}, expected {HF_CLASS[spec.modality]}")
        diff = check_equivalent(loaded.model.student_encoder(), reloaded, spec, "export (reloaded with AutoModel)")
        notes = list(card.notes)
        if spec.modality == "text":
            notes.append("transformers' pooler (tanh dense on the first token) has no d2v counterpart and is not "
                         "included: AutoModel initialises it randomly; use last_hidden_state.")
        (staging / CARD_NAME).write_text(render_card(replace(card, max_abs_difference=diff, notes=notes)), encoding="utf-8")
    return ExportResult(out_dir, time.perf_counter() - start, diff)


def _hf_model(transformers: Any, loaded: LoadedCheckpoint) -> Any:
    spec = loaded.spec
    class_name = HF_CLASS[spec.modality]
    student = loaded.student_state()
    config = getattr(transformers, class_name.replace("Model", "Config"))(
        **hf_config_kwargs(spec, has_mask_embed="frontend.mask_embed" in student)
    )
    config.architectures = [class_name]
    model_cls = getattr(transformers, class_name)
    hf_model = model_cls(config, add_pooling_layer=False) if spec.modality != "speech" else model_cls(config)
    sincos = loaded.model.frontend.pos_embed if spec.image is not None and spec.image.positions == "sincos" else None
    missing, unexpected = hf_model.load_state_dict(to_hf_state(spec, student, sincos), strict=False)
    missing = [k for k in missing if not k.startswith(HF_ONLY_PREFIXES)]
    if missing or unexpected:
        raise WeightMismatch(f"export to {class_name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return hf_model.eval()


def export_safetensors(loaded: LoadedCheckpoint, out_dir: Path, card: CardInfo) -> ExportResult:
    """d2v-native weights-only export: model.safetensors (front end + encoder under d2v's names),
    d2v_spec.json (the spec and fingerprint) and README.md. Works for every d2v model."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    tensors: dict[str, Tensor] = {k: v.detach().contiguous() for k, v in loaded.student_state().items()}
    spec_doc = {"modality": loaded.spec.modality, "version": loaded.spec.version,
                "fingerprint": loaded.fingerprint, "spec": to_mapping(loaded.spec)}
    with atomic_dir(out_dir) as staging:
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt", "d2v_modality": loaded.spec.modality})
        (staging / NATIVE_SPEC_NAME).write_text(json.dumps(spec_doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (staging / CARD_NAME).write_text(render_card(card), encoding="utf-8")
    return ExportResult(out_dir, time.perf_counter() - start, None)


def load_safetensors_export(directory: Path) -> Data2Vec:
    """A model rebuilt from a `--format safetensors` export: its student holds the exported weights
    (the teacher copies them; head / decoder stay at their initialisation)."""
    from safetensors.torch import load_file

    from d2v.config import from_mapping

    doc = json.loads((directory / NATIVE_SPEC_NAME).read_text(encoding="utf-8"))
    model = build_model(from_mapping(Data2VecSpec, doc["spec"], path=str(directory / NATIVE_SPEC_NAME)))
    student = load_file(str(directory / WEIGHTS_NAME))
    state = model.state_dict()
    unknown = sorted(set(student) - set(state))
    if unknown:
        raise WeightMismatch(f"{directory / WEIGHTS_NAME}: tensors {unknown[:5]} do not belong to the spec's model")
    state.update(student)
    state.update({f"teacher.module.{k}": v for k, v in student.items() if f"teacher.module.{k}" in state})
    model.load_state_dict(state)
    return model.eval()
