"""`d2v import`: a transformers Data2Vec{Vision,Audio,Text} directory -> a d2v checkpoint.

The checkpoint has the format d2v's trainer writes (d2v.train.checkpoint): student and teacher both
hold the imported weights, the optimizer and schedule are empty (pretraining from it starts them
fresh), and the spec travels inside it so that `model.<modality>.init_from` can rebuild the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from d2v.core.data2vec import Data2Vec
from d2v.core.spec import Data2VecSpec
from d2v.errors import D2VError
from d2v.interop.compat import HF_CLASS
from d2v.interop.equivalence import check_equivalent
from d2v.interop.hf_config import spec_from_hf_config
from d2v.interop.hf_runtime import quiet_transformers
from d2v.interop.hf_weights import StateDict, from_hf_state
from d2v.interop.init_from import IMPORTED_PRESET, imported_progress
from d2v.models import build_model
from d2v.train.checkpoint import DataPosition, ModelFingerprint, build_payload, save_checkpoint


# Weights a directory may lack: the text pooler (not part of the last hidden states) and the mask
# embeddings (d2v keeps its own initialisation for those).
OPTIONAL_HF_WEIGHTS = ("pooler.", "masked_spec_embed", "embeddings.mask_token")


@dataclass(frozen=True)
class ImportResult:
    checkpoint: Path
    spec: Data2VecSpec
    seconds: float
    max_abs_difference: float  # d2v student vs the transformers model on a sample batch


def import_hf(hf_dir: Path, out: Path, version: int = 1, seed: int = 0) -> ImportResult:
    """Convert, check the outputs match, then write the checkpoint (nothing is written on failure).

    seed: initialises what a transformers model does not hold (the v1 regression head or the v2
    decoder, and a mask embedding the model lacks)."""
    start = time.perf_counter()
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise D2VError(f"{config_path}: not found (expected a transformers model directory)")
    with quiet_transformers() as transformers:
        config = transformers.AutoConfig.from_pretrained(hf_dir, local_files_only=True)
        spec = spec_from_hf_config(config.to_dict(), version, source=str(config_path))
        hf_model, info = transformers.AutoModel.from_pretrained(hf_dir, local_files_only=True, output_loading_info=True)
    # A weight the directory lacks is initialised randomly by transformers; d2v would copy that noise.
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(OPTIONAL_HF_WEIGHTS)]
    if missing:
        raise D2VError(f"{hf_dir}: the weights lack {sorted(missing)[:5]} (an incomplete or mismatched checkpoint)")
    hf_model.eval()
    if type(hf_model).__name__ != HF_CLASS[spec.modality]:
        raise D2VError(f"{hf_dir}: AutoModel loaded {type(hf_model).__name__}, expected {HF_CLASS[spec.modality]}")
    torch.manual_seed(seed)
    model = build_model(spec)
    has_mask = model.frontend.mask_embed is not None
    _load_student_and_teacher(model, from_hf_state(spec, hf_model.state_dict(), has_mask))
    model.eval()
    diff = check_equivalent(model.student_encoder(), hf_model, spec, f"import of {hf_dir}")
    payload = build_payload(
        fingerprint=ModelFingerprint.of(spec.modality, spec.version, IMPORTED_PRESET, spec),
        model_state=model.state_dict(),
        optimizer_state={},
        scheduler_state={},
        rng_per_rank=[],
        step=0,
        position=DataPosition(epoch=0, batches_consumed=0),
        progress=imported_progress(spec, {"hf_dir": str(hf_dir), "model_type": config.model_type,
                                          "name_or_path": str(getattr(config, "_name_or_path", "") or hf_dir)}),
    )
    save_checkpoint(out, payload)
    return ImportResult(out, spec, time.perf_counter() - start, diff)


def _load_student_and_teacher(model: Data2Vec, student: StateDict) -> None:
    """The student's front end and encoder from `student`; the teacher's copy of them too."""
    state = model.state_dict()
    unknown = sorted(set(student) - set(state))
    if unknown:
        raise D2VError(f"import: mapped tensors {unknown[:5]} do not exist in the d2v model")
    # Everything of the student comes from the transformers model, except a mask embedding it lacks.
    uncovered = sorted(k for k in state if k.startswith(("frontend.", "encoder.")) and k not in student
                       and k != "frontend.mask_embed")
    if uncovered:
        raise D2VError(f"import: the transformers weights leave {uncovered[:5]} of the d2v model unset")
    for name, tensor in student.items():
        if state[name].shape != tensor.shape:
            raise D2VError(f"import: {name} has shape {tuple(tensor.shape)}, the d2v model {tuple(state[name].shape)}")
        state[name] = tensor
        if f"teacher.module.{name}" in state:  # v1 teachers average the encoder only (frontend shared)
            state[f"teacher.module.{name}"] = tensor
    model.load_state_dict(state)
