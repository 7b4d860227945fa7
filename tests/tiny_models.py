"""Any registered preset shrunk to a few thousand parameters, and a fixed batch for it.

Shared by the core tests (one forward/backward per preset) and the models tests (pinned losses).
"""

from __future__ import annotations

from typing import Any

import torch

from d2v.config import ModelChoice
from d2v.core.data2vec import Data2Vec
from d2v.models import build_model, model_spec

# Shrinks any preset to a few thousand parameters while keeping its structure (norm placement,
# masking kind, targets, loss, decoder type).
TINY_WIDTH: dict[str, Any] = {
    "encoder": {"dim": 32, "depth": 2, "heads": 2, "layer_drop": 0.0},
    "target": {"top_k": 2},
    "clone_batch": 2,
}
FRONT_OVERRIDES: dict[str, dict[str, Any]] = {
    "image": {"image": {"image_size": 16, "patch_size": 4}, "mask": {"min_block": 2}},
    "speech": {"speech": {"conv_layers": [[16, k, s] for k, s in ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))],
                          "conv_pos_depth": 1, "conv_pos_groups": 4}},
    "text": {"text": {"vocab_size": 64, "max_positions": 32}},
}


def tiny_model(modality: str, version: int, preset: str) -> Data2Vec:
    overrides = {**TINY_WIDTH, **FRONT_OVERRIDES[modality]}
    if version == 2:
        overrides["decoder"] = {"dim": 16, "groups": 4 if modality != "text" else 1}
    torch.manual_seed(0)
    return build_model(model_spec(modality, ModelChoice(version=version, preset=preset, overrides=overrides)))


def tiny_batch(modality: str, spec_in_chans: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if modality == "image":
        return {"image": torch.randn(3, spec_in_chans, 16, 16, generator=g)}
    if modality == "speech":
        lengths = torch.tensor([[8000], [6400]])
        return {"waveform": torch.randn(2, 8000, generator=g), "padding_mask": torch.arange(8000)[None] >= lengths}
    tokens = torch.randint(5, 64, (3, 20), generator=g)
    tokens[2, 15:] = 0  # padding
    return {"tokens": tokens, "padding_mask": tokens == 0}


def batch_for(model: Data2Vec) -> dict[str, torch.Tensor]:
    chans = model.spec.image.in_chans if model.spec.image else 1
    return tiny_batch(model.spec.modality, chans)
