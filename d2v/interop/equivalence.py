"""The check behind every export and import: d2v's student encoder and the transformers model give
the same last hidden states for the same input (compared where neither is padding)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from d2v.core.spec import Data2VecSpec
from d2v.core.types import MASK_ID, PAD_ID, Batch
from d2v.errors import D2VError

# Largest |d2v - transformers| accepted, relative to the outputs' own scale (float32 rounding is
# ~1e-6 of it; a mapping mistake is of the order of the outputs).
TOLERANCE = 1e-4


class NotEquivalent(D2VError):
    """The converted model does not reproduce the original's outputs."""


def sample_batch(spec: Data2VecSpec, seed: int = 0) -> Batch:
    """A small random d2v batch for `spec`, with one padded row for speech and text."""
    g = torch.Generator().manual_seed(seed)
    if spec.modality == "image":
        assert spec.image is not None
        size = spec.image.image_size
        return {"image": torch.randn(2, spec.image.in_chans, size, size, generator=g)}
    if spec.modality == "speech":
        samples = 8000  # half a second: a few dozen frames of any wav2vec 2.0-shaped stack
        padding = torch.zeros(2, samples, dtype=torch.bool)
        padding[1, samples * 3 // 4 :] = True
        wave = torch.randn(2, samples, generator=g).masked_fill(padding, 0.0)
        return {"waveform": wave, "padding_mask": padding}
    assert spec.text is not None
    length = min(16, spec.text.max_positions)
    tokens = torch.randint(MASK_ID + 1, spec.text.vocab_size, (2, length), generator=g)
    tokens[1, length * 3 // 4 :] = PAD_ID
    return {"tokens": tokens, "padding_mask": tokens.eq(PAD_ID)}


def d2v_hidden(student: nn.Module, batch: Batch) -> tuple[Tensor, Tensor | None]:
    """d2v's last hidden states (CLS first where there is one) and the (B, T) padding mask."""
    with torch.no_grad():
        out = student(batch)
    x = out.x if out.cls is None else torch.cat([out.cls[:, None], out.x], dim=1)
    padding = out.padding_mask
    if padding is not None and out.cls is not None:
        padding = torch.cat([padding.new_zeros(padding.shape[0], 1), padding], dim=1)
    return x, padding


def hf_hidden(hf_model: nn.Module, spec: Data2VecSpec, batch: Batch) -> Tensor:
    """transformers' last hidden states for the same batch."""
    kwargs: dict[str, Any]
    if spec.modality == "image":
        kwargs = {"pixel_values": batch["image"]}
    elif spec.modality == "speech":
        kwargs = {"input_values": batch["waveform"], "attention_mask": (~batch["padding_mask"]).long()}
    else:
        kwargs = {"input_ids": batch["tokens"], "attention_mask": (~batch["padding_mask"]).long()}
    with torch.no_grad():
        return hf_model(**kwargs).last_hidden_state


def max_abs_difference(student: nn.Module, hf_model: nn.Module, spec: Data2VecSpec, batch: Batch) -> tuple[float, float]:
    """(max |d2v - transformers| over non-padding positions, max |output| there)."""
    student.eval()
    hf_model.eval()
    ours, padding = d2v_hidden(student, batch)
    theirs = hf_hidden(hf_model, spec, batch)
    if ours.shape != theirs.shape:
        raise NotEquivalent(f"output shapes differ: d2v {tuple(ours.shape)}, transformers {tuple(theirs.shape)}")
    valid = torch.ones(ours.shape[:2], dtype=torch.bool) if padding is None else ~padding
    return float((ours - theirs).abs()[valid].max()), float(theirs.abs()[valid].max())


def check_equivalent(student: nn.Module, hf_model: nn.Module, spec: Data2VecSpec, what: str) -> float:
    """Max abs difference on a sample batch; NotEquivalent when it exceeds the tolerance."""
    diff, scale = max_abs_difference(student, hf_model, spec, sample_batch(spec))
    if diff > TOLERANCE * max(1.0, scale):
        raise NotEquivalent(
            f"{what}: last hidden states differ by up to {diff:.3g} (outputs up to {scale:.3g}); "
            "the mapping is not exact for this model, nothing was written"
        )
    return diff
