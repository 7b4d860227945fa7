"""Small d2v models and transformers models for the interop tests, with every weight perturbed.

Fresh initialisations hide mapping mistakes (LayerNorms at 1/0, zero biases, equal layer scales, a
zero relative position table): every parameter gets N(0, 0.2) noise added before a comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from d2v.config import ModelChoice
from d2v.core.data2vec import Data2Vec
from d2v.models import DataShape, build_model, model_spec
from d2v.train.checkpoint import DataPosition, ModelFingerprint, build_payload, save_checkpoint

WAV2VEC_GEOMETRY = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))
FRONT: dict[str, dict[str, Any]] = {
    "image": {"image": {"image_size": 16, "patch_size": 4, "in_chans": 3}},
    "speech": {"speech": {"conv_layers": [[16, k, s] for k, s in WAV2VEC_GEOMETRY], "conv_pos_depth": 2,
                          "conv_pos_groups": 4, "feature_extractor": "cnn"}},
    "text": {"text": {"vocab_size": 64, "max_positions": 32}},
}
EXPORTABLE = [("image", 1), ("speech", 1), ("text", 1), ("text", 2)]
NOT_EXPORTABLE = [("image", 2), ("speech", 2)]


def small_choice(modality: str, version: int, **extra: Any) -> ModelChoice:
    """The tiny preset shrunk to width 32, depth 2 (the front end of FRONT), plus `extra` overrides."""
    overrides: dict[str, Any] = {"encoder": {"dim": 32, "depth": 2, "heads": 2}, "target": {"top_k": 2}, **FRONT[modality]}
    if version == 2:
        overrides["decoder"] = {"dim": 16, "groups": 1}
    for key, value in extra.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return ModelChoice(version=version, preset="tiny", overrides=overrides)


def perturb(module: nn.Module, seed: int = 0, std: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def perturbed_model(choice: ModelChoice, modality: str) -> Data2Vec:
    torch.manual_seed(0)
    model = build_model(model_spec(modality, choice))
    perturb(model)
    return model.eval()


def write_checkpoint(path: Path, model: Data2Vec, choice: ModelChoice) -> Path:
    """A checkpoint of `model` in the trainer's format, fingerprinted as pretraining would."""
    spec = model.spec
    fingerprint = ModelFingerprint.of(spec.modality, choice.version, choice.preset, spec)
    save_checkpoint(path, build_payload(
        fingerprint=fingerprint, model_state=model.state_dict(), optimizer_state={}, scheduler_state={},
        rng_per_rank=[], step=7, position=DataPosition(0, 0), progress={},
    ))
    return path


def resolver(choice: ModelChoice):
    return lambda modality: (choice, DataShape())


# ------------------------------------------------------------------------------ transformers side

HF_SMALL: dict[str, dict[str, Any]] = {
    "image": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
              "image_size": 16, "patch_size": 4, "num_channels": 3, "use_shared_relative_position_bias": True,
              "use_mean_pooling": False, "layer_scale_init_value": 0.1, "layer_norm_eps": 1e-6},
    "speech": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": [16] * 7, "conv_kernel": [k for k, _ in WAV2VEC_GEOMETRY],
               "conv_stride": [s for _, s in WAV2VEC_GEOMETRY], "num_conv_pos_embeddings": 2,
               "num_conv_pos_embedding_groups": 4, "conv_pos_kernel_size": 19},
    "text": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "vocab_size": 64, "max_position_embeddings": 33, "pad_token_id": 0, "bos_token_id": 2,
             "eos_token_id": 3, "type_vocab_size": 2, "layer_norm_eps": 1e-5},
}
HF_CLASSES = {"image": "Data2VecVision", "speech": "Data2VecAudio", "text": "Data2VecText"}


def save_hf_model(directory: Path, modality: str, **config_changes: Any) -> nn.Module:
    """A perturbed transformers model with a tiny config, saved with save_pretrained."""
    import transformers

    name = HF_CLASSES[modality]
    config = getattr(transformers, f"{name}Config")(**{**HF_SMALL[modality], **config_changes})
    torch.manual_seed(0)
    model = getattr(transformers, f"{name}Model")(config)
    perturb(model, seed=3)
    model.save_pretrained(directory)
    return model.eval()
