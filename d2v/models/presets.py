"""Size presets as changes to the released base configuration (`d2v/models/released.py`).

A preset is a nested mapping of spec fields, applied with the same mechanism as params.yaml's
`model.<modality>.overrides`, so `d2v model show` can say which layer set each value:
- base:  the released base model, unchanged.
- large: the released large configurations.
- tiny:  the CPU demo scale of the embedded default. Every value that differs from the released
         recipe for a reason other than size is here, with that reason.
"""

from __future__ import annotations

from typing import Any

from d2v.errors import ConfigError
from d2v.models.released import wav2vec_conv

PRESETS = ("tiny", "base", "large")
Changes = dict[str, Any]

# ------------------------------------------------------------------------------------------ large

_LARGE_ENCODER: Changes = {"dim": 1024, "depth": 24, "heads": 16}

_LARGE: dict[tuple[str, int], Changes] = {
    ("image", 1): {
        "encoder": {**_LARGE_ENCODER, "layer_scale_init": 1e-5, "drop_path": 0.2, "attn_dropout": 0.15},
    },
    ("image", 2): {
        "encoder": _LARGE_ENCODER,
        "mask": {"ratio": 0.75, "adjust": 0.1},
        "target": {"top_k": 18},
        "ema": {"anneal_steps": 150_000},
        "decoder": {"dim": 1024, "layers": 3, "kernel": 5},
    },
    ("speech", 1): {"encoder": _LARGE_ENCODER, "target": {"top_k": 16}},
    ("speech", 2): {
        "encoder": _LARGE_ENCODER,
        "mask": {"ratio": 0.55, "adjust": 0.1},
        "target": {"top_k": 16},
        "ema": {"tau0": 0.9997, "tau_end": 1.0, "anneal_steps": 300_000},
        "decoder": {"dim": 768},
        "clone_batch": 12,
    },
    ("text", 1): {"encoder": _LARGE_ENCODER, "target": {"top_k": 20}},
    ("text", 2): {"encoder": _LARGE_ENCODER, "target": {"top_k": 24}, "decoder": {"dim": 1024}},
}

# ------------------------------------------------------------------------------------------- tiny

# Width 128, 4 blocks, no dropout: a model that pretrains in minutes on 2 CPU cores.
_TINY_ENCODER: Changes = {
    "dim": 128, "depth": 4, "heads": 4,
    "dropout": 0.0, "attn_dropout": 0.0, "drop_path": 0.0, "layer_drop": 0.0,
}  # fmt: skip
# A few hundred CPU updates cannot wait for tau ~ 0.9999 (the released teachers move over 30k-300k
# updates): the tiny teacher follows the student faster.
_TINY_EMA: Changes = {"tau0": 0.99, "tau_end": 0.999, "anneal_steps": 1000}
# fairseq checks for collapse after 5k updates; the tiny demo is shorter, so it checks from step 200.
_TINY_COLLAPSE: Changes = {"warmup_steps": 200}
_TINY_COMMON: Changes = {"encoder": _TINY_ENCODER, "ema": _TINY_EMA, "collapse": _TINY_COLLAPSE}
# 28 x 28 grey Fashion-MNIST images in 4 x 4 patches (7 x 7 grid). As with the vocabulary below, the
# prepared data's image size and channels replace the preset's when a model is built for that data.
_TINY_IMAGE_FRONT: Changes = {"image_size": 28, "patch_size": 4, "in_chans": 1}
# A 64-channel CNN and a 2-layer positional convolution instead of 512 channels and 5 layers.
_TINY_SPEECH_FRONT: Changes = {"conv_layers": wav2vec_conv(64), "conv_pos_depth": 2}
# The embedded tokenizer's 8k pieces (the prepared vocabulary replaces it) and 128-token blocks.
_TINY_TEXT_FRONT: Changes = {"vocab_size": 8000, "max_positions": 128}

_TINY: dict[tuple[str, int], Changes] = {
    ("image", 1): {
        **_TINY_COMMON,
        "encoder": {**_TINY_ENCODER, "layer_scale_init": 0.1},
        "mask": {"min_block": 4},  # BEiT's 16-patch minimum block does not fit a 7 x 7 grid
        "target": {"top_k": 3},
        "image": _TINY_IMAGE_FRONT,
    },
    ("image", 2): {
        **_TINY_COMMON,
        # The released K=10 of 12 blocks leaves the first two out; 3 of 4 leaves out the first.
        "target": {"top_k": 3},
        "decoder": {"dim": 128, "layers": 3, "groups": 8},
        "clone_batch": 2,
        "image": _TINY_IMAGE_FRONT,
    },
    ("speech", 1): {**_TINY_COMMON, "target": {"top_k": 3}, "speech": _TINY_SPEECH_FRONT},
    ("speech", 2): {
        **_TINY_COMMON,
        "target": {"top_k": 3},
        "decoder": {"dim": 64, "layers": 2},
        "clone_batch": 2,
        "speech": _TINY_SPEECH_FRONT,
    },
    ("text", 1): {**_TINY_COMMON, "target": {"top_k": 3}, "text": _TINY_TEXT_FRONT},
    ("text", 2): {
        **_TINY_COMMON,
        "target": {"top_k": 4},
        "decoder": {"dim": 128, "layers": 2},
        "clone_batch": 2,
        "text": _TINY_TEXT_FRONT,
    },
}


def preset_changes(modality: str, version: int, preset: str) -> Changes:
    """The nested spec changes `preset` makes to the released base configuration."""
    if preset not in PRESETS:
        raise ConfigError(f"model.{modality}.preset: unknown preset {preset!r} (expected one of: {', '.join(PRESETS)})")
    if preset == "base":
        return {}
    return (_LARGE if preset == "large" else _TINY)[(modality, version)]
