"""Config mapping: a d2v spec <-> a transformers Data2Vec{Vision,Audio,Text}Config.

Export writes the architecture fields; dropout rates travel too, so that fine-tuning in
transformers regularises as the d2v recipe does. Import reads only the architecture: fields d2v
cannot represent are refused by name, and everything a config does not describe (masking, targets,
loss, EMA, decoder, dropout rates) comes from d2v's released recipe of the chosen version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from d2v.core.spec import Data2VecSpec, ImageFrontSpec, SpeechFrontSpec, TextFrontSpec
from d2v.core.types import BOS_ID, EOS_ID, PAD_ID
from d2v.errors import D2VError
from d2v.interop.compat import SPEECH_FEATURE_NORM_EPS
from d2v.models import released_spec

MODEL_TYPES = {"image": "data2vec-vision", "speech": "data2vec-audio", "text": "data2vec-text"}
MODALITY_OF = {model_type: modality for modality, model_type in MODEL_TYPES.items()}


class ImportRefused(D2VError):
    """A transformers config that d2v cannot represent exactly."""


# ------------------------------------------------------------------------------------------- export


def hf_config_kwargs(spec: Data2VecSpec, has_mask_embed: bool) -> dict[str, Any]:
    """Keyword arguments of the transformers config class for `spec` (assumed exportable)."""
    enc = spec.encoder
    common: dict[str, Any] = {
        "hidden_size": enc.dim,
        "num_hidden_layers": enc.depth,
        "num_attention_heads": enc.heads,
        "intermediate_size": int(enc.dim * enc.mlp_ratio),
        "hidden_act": "gelu",  # exact (erf) GELU in both
        "layer_norm_eps": enc.norm_eps,
    }
    if spec.modality == "image":
        assert spec.image is not None
        return {
            **common,
            "image_size": spec.image.image_size,
            "patch_size": spec.image.patch_size,
            "num_channels": spec.image.in_chans,
            "use_mask_token": has_mask_embed,
            "use_absolute_position_embeddings": spec.image.positions != "relative_bias",
            "use_relative_position_bias": False,
            "use_shared_relative_position_bias": spec.image.positions == "relative_bias",
            "layer_scale_init_value": enc.layer_scale_init if enc.layer_scale_init is not None else 0.0,
            # The final LayerNorm applies to every token (d2v's final_norm), not only to the pooled mean.
            "use_mean_pooling": False,
            "hidden_dropout_prob": enc.dropout,
            "attention_probs_dropout_prob": enc.attn_dropout,
            "drop_path_rate": enc.drop_path,
        }
    if spec.modality == "speech":
        assert spec.speech is not None
        layers = spec.speech.conv_layers
        return {
            **common,
            "conv_dim": [c for c, _, _ in layers],
            "conv_kernel": [k for _, k, _ in layers],
            "conv_stride": [s for _, _, s in layers],
            "conv_bias": False,
            "feat_extract_activation": "gelu",
            "conv_pos_kernel_size": spec.speech.conv_pos_kernel,
            "num_conv_pos_embedding_groups": spec.speech.conv_pos_groups,
            "num_conv_pos_embeddings": spec.speech.conv_pos_depth,
            # transformers creates masked_spec_embed only when it may mask (SpecAugment while fine-tuning).
            "mask_time_prob": 0.05 if has_mask_embed else 0.0,
            "hidden_dropout": enc.dropout,
            "attention_dropout": enc.attn_dropout,
            "activation_dropout": enc.activation_dropout,
            "layerdrop": enc.layer_drop,
            "feat_proj_dropout": 0.0,
        }
    assert spec.text is not None
    return {
        **common,
        "vocab_size": spec.text.vocab_size,
        # RoBERTa-style position ids start after the padding id: d2v position t is row t + PAD_ID + 1.
        "max_position_embeddings": spec.text.max_positions + PAD_ID + 1,
        "type_vocab_size": 1,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "hidden_dropout_prob": enc.dropout,
        "attention_probs_dropout_prob": enc.attn_dropout,
    }


# ------------------------------------------------------------------------------------------- import


def spec_from_hf_config(config: Mapping[str, Any], version: int, source: str = "config.json") -> Data2VecSpec:
    """The d2v spec of a transformers Data2Vec config (a mapping: `config.to_dict()` or config.json)."""
    model_type = config.get("model_type")
    if model_type not in MODALITY_OF:
        raise ImportRefused(
            f"{source}: model_type={model_type!r} is not a data2vec model (expected one of: {', '.join(MODALITY_OF)})"
        )
    modality = MODALITY_OF[model_type]
    _refuse(config, source, "hidden_act", "gelu")
    dim, ffn = int(config["hidden_size"]), int(config["intermediate_size"])
    base = released_spec(modality, version)
    depth = int(config["num_hidden_layers"])
    encoder = replace(
        base.encoder, dim=dim, depth=depth, heads=int(config["num_attention_heads"]),
        mlp_ratio=ffn / dim, norm_eps=float(config["layer_norm_eps"]),
    )
    if int(dim * encoder.mlp_ratio) != ffn:
        raise ImportRefused(f"{source}: intermediate_size={ffn} is not representable as a ratio of hidden_size={dim}")
    front = {"image": _image_front, "speech": _speech_front, "text": _text_front}[modality]
    encoder, fronts = front(config, encoder, source)
    target = replace(base.target, top_k=min(base.target.top_k, depth))
    return replace(base, encoder=encoder, target=target, **fronts)


def _image_front(config: Mapping[str, Any], encoder: Any, source: str) -> tuple[Any, dict[str, Any]]:
    _refuse(config, source, "use_relative_position_bias", False,
            "a relative position bias per layer (the fine-tuned *-ft1k checkpoints); d2v shares one table across blocks")
    _refuse(config, source, "use_mean_pooling", False,
            "the last hidden states then have no final LayerNorm (it sits in the pooler); d2v's pre-LN encoder ends in one")
    shared, absolute = bool(config.get("use_shared_relative_position_bias")), bool(config.get("use_absolute_position_embeddings"))
    if shared == absolute:
        raise ImportRefused(
            f"{source}: use_shared_relative_position_bias={shared} and use_absolute_position_embeddings={absolute}: "
            "d2v images use exactly one kind of position (a shared relative bias or an absolute table)"
        )
    size, patch = _square(config, "image_size", source), _square(config, "patch_size", source)
    scale = float(config.get("layer_scale_init_value", 0.0))
    front = ImageFrontSpec(
        image_size=size, patch_size=patch, in_chans=int(config["num_channels"]),
        positions="relative_bias" if shared else "learned",
    )
    return replace(encoder, norm_first=True, layer_scale_init=scale if scale > 0 else None), {"image": front}


def _speech_front(config: Mapping[str, Any], encoder: Any, source: str) -> tuple[Any, dict[str, Any]]:
    _refuse(config, source, "conv_bias", False, "d2v's feature-encoder convolutions have no bias")
    _refuse(config, source, "feat_extract_activation", "gelu")
    _refuse(config, source, "add_adapter", False, "d2v has no adapter after the encoder")
    if encoder.norm_eps != SPEECH_FEATURE_NORM_EPS:
        raise ImportRefused(
            f"{source}: layer_norm_eps={encoder.norm_eps}: d2v's speech feature-projection LayerNorm uses "
            f"{SPEECH_FEATURE_NORM_EPS} (transformers uses layer_norm_eps there too)"
        )
    kernel = int(config["conv_pos_kernel_size"])
    if kernel % 2 == 0:
        raise ImportRefused(f"{source}: conv_pos_kernel_size={kernel}: d2v's positional convolution needs an odd kernel")
    dims, kernels, strides = config["conv_dim"], config["conv_kernel"], config["conv_stride"]
    if not len(dims) == len(kernels) == len(strides):
        raise ImportRefused(f"{source}: conv_dim, conv_kernel and conv_stride must have the same length")
    front = SpeechFrontSpec(
        conv_layers=tuple((int(c), int(k), int(s)) for c, k, s in zip(dims, kernels, strides)),
        conv_pos_kernel=kernel,
        conv_pos_groups=int(config["num_conv_pos_embedding_groups"]),
        conv_pos_depth=int(config["num_conv_pos_embeddings"]),
        feature_extractor="cnn",
    )
    return replace(encoder, norm_first=False, layer_scale_init=None, alibi=False, alibi_learned_scale=False), {"speech": front}


def _text_front(config: Mapping[str, Any], encoder: Any, source: str) -> tuple[Any, dict[str, Any]]:
    _refuse(config, source, "pad_token_id", PAD_ID,
            f"d2v's text models pad with id {PAD_ID} (its tokenizer: pad {PAD_ID}, bos {BOS_ID}, eos {EOS_ID}); "
            "a model with another vocabulary cannot read d2v's tokens")
    _refuse(config, source, "is_decoder", False, "d2v's text encoder is bidirectional")
    _refuse(config, source, "add_cross_attention", False)
    positions = int(config["max_position_embeddings"]) - PAD_ID - 1
    front = TextFrontSpec(vocab_size=int(config["vocab_size"]), max_positions=positions)
    return replace(encoder, norm_first=False, layer_scale_init=None, alibi=False, alibi_learned_scale=False), {"text": front}


def _refuse(config: Mapping[str, Any], source: str, field: str, expected: Any, why: str = "") -> None:
    value = config.get(field, expected)
    if value != expected:
        reason = f": {why}" if why else ""
        raise ImportRefused(f"{source}: {field}={value!r} is not supported (d2v needs {expected!r}){reason}")


def _square(config: Mapping[str, Any], field: str, source: str) -> int:
    value = config[field]
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ImportRefused(f"{source}: {field}={list(value)}: d2v's image models are square")
        value = value[0]
    return int(value)
