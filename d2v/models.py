"""Named model presets (tiny / base / large per modality and version) and the model builder.

Base and large follow the released fairseq / data2vec_vision configurations (see
shared reference `data2vec.md`); where the paper and the released code differ, the released code
is the default and the paper's choice is one override away (noted beside each field). `tiny` is the
CPU demo scale used by the embedded default profile.
"""

from __future__ import annotations

from dataclasses import replace

from d2v.config import ModelChoice, with_overrides
from d2v.core.data2vec import Data2Vec
from d2v.core.spec import (
    CollapseSpec,
    Data2VecSpec,
    DecoderSpec,
    EmaSpec,
    EncoderSpec,
    ImageFrontSpec,
    LossSpec,
    MaskSpec,
    SpeechFrontSpec,
    TargetSpec,
    TextFrontSpec,
)
from d2v.errors import ConfigError
from d2v.modalities.base import Frontend
from d2v.modalities.image import ImageFrontend
from d2v.modalities.speech import SpeechFrontend
from d2v.modalities.text import TextFrontend

PRESETS = ("tiny", "base", "large")

# wav2vec 2.0 feature encoder: strides 5,2,2,2,2,2,2 and kernels 10,3,3,3,3,2,2 (16 kHz -> 50 Hz).
_WAV2VEC_STRIDES = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))


def _wav2vec_conv(channels: int) -> tuple[tuple[int, int, int], ...]:
    return tuple((channels, kernel, stride) for kernel, stride in _WAV2VEC_STRIDES)


def _size(preset: str, tiny: EncoderSpec, base: EncoderSpec, large: EncoderSpec) -> EncoderSpec:
    return {"tiny": tiny, "base": base, "large": large}[preset]


# ------------------------------------------------------------------------------------------ image


def image_spec(version: int, preset: str) -> Data2VecSpec:
    if version == 1:
        # data2vec_vision (BEiT fork): pre-LN + layer-scale, block-wise 60% masks, end-of-block
        # targets (paper: FFN output -> target.source=ffn), LN per layer + LN of the average,
        # smooth L1 beta 2 averaged over channels, constant tau 0.9998.
        encoder = _size(
            preset,
            EncoderSpec(dim=128, depth=4, heads=4, norm_first=True, layer_scale_init=0.1),
            EncoderSpec(dim=768, depth=12, heads=12, norm_first=True, layer_scale_init=1e-4, drop_path=0.25, attn_dropout=0.05),
            EncoderSpec(dim=1024, depth=24, heads=16, norm_first=True, layer_scale_init=1e-5, drop_path=0.2, attn_dropout=0.15),
        )
        return Data2VecSpec(
            modality="image",
            version=1,
            encoder=encoder,
            mask=MaskSpec(kind="block", ratio=0.6, min_block=4 if preset == "tiny" else 16),
            target=TargetSpec(top_k=3 if preset == "tiny" else 6, layer_norm="layer", final_norm="layer", source="block"),
            loss=LossSpec(kind="smooth_l1", beta=2.0, reduction="mean", scale=1.0),
            ema=EmaSpec(tau0=0.99, tau_end=0.999, anneal_steps=1000) if preset == "tiny" else EmaSpec(0.9998, 0.9998, 0),
            collapse=_collapse(preset),
            image=ImageFrontSpec(image_size=28, patch_size=4, in_chans=1) if preset == "tiny" else ImageFrontSpec(224, 16, 3),
        )
    # data2vec 2.0: post-LN, inverse block masks (80%, 3x3 kept blocks), M=16 clones, instance norm per
    # layer + LN of the average, 2-D conv decoder, L2 / sqrt(D) + 0.01 CLS loss, teacher incl. patch embed.
    encoder = _size(
        preset,
        EncoderSpec(dim=128, depth=4, heads=4, norm_first=False),
        EncoderSpec(dim=768, depth=12, heads=12, norm_first=False),
        EncoderSpec(dim=1024, depth=24, heads=16, norm_first=False),
    )
    decoder = {
        "tiny": DecoderSpec(dim=128, layers=3, kernel=3, groups=8),
        "base": DecoderSpec(dim=768, layers=6, kernel=3, groups=16),
        "large": DecoderSpec(dim=1024, layers=3, kernel=5, groups=16),
    }[preset]
    return Data2VecSpec(
        modality="image",
        version=2,
        encoder=encoder,
        mask=MaskSpec(kind="inverse_block", ratio=0.75 if preset == "large" else 0.8, span=3, adjust=0.1 if preset == "large" else 0.07),
        target=TargetSpec(top_k={"tiny": 4, "base": 10, "large": 18}[preset], layer_norm="instance", final_norm="layer"),
        loss=LossSpec(kind="l2", reduction="sum", scale=None, cls_weight=0.01),
        ema=_ema(preset, EmaSpec(0.9998, 0.99999, 100_000 if preset == "base" else 150_000, include_frontend=True)),
        collapse=_collapse(preset),
        decoder=decoder,
        clone_batch=2 if preset == "tiny" else 16,
        image=ImageFrontSpec(image_size=28, patch_size=4, in_chans=1) if preset == "tiny" else ImageFrontSpec(224, 16, 3),
    )


# ----------------------------------------------------------------------------------------- speech


def speech_spec(version: int, preset: str) -> Data2VecSpec:
    # fairseq base_librispeech: post-LN, dropout 0.1, LayerDrop 0.05, 512-channel CNN, 5-layer conv
    # positional encoder (kernel 19, 16 groups), instance-normed targets from the top 8 FFN outputs.
    encoder = _size(
        preset,
        EncoderSpec(dim=128, depth=4, heads=4, norm_first=False),
        EncoderSpec(dim=768, depth=12, heads=12, norm_first=False, dropout=0.1, attn_dropout=0.1, layer_drop=0.05),
        EncoderSpec(dim=1024, depth=24, heads=16, norm_first=False, dropout=0.1, attn_dropout=0.1, layer_drop=0.05),
    )
    front = SpeechFrontSpec(
        conv_layers=_wav2vec_conv(64 if preset == "tiny" else 512),
        conv_pos_depth=2 if preset == "tiny" else 5,
    )
    top_k = {"tiny": 3, "base": 8, "large": 16}[preset]
    if version == 1:
        return Data2VecSpec(
            modality="speech",
            version=1,
            encoder=encoder,
            mask=MaskSpec(kind="span", ratio=0.65, span=10),  # start prob 0.065 x span 10: ~49% masked
            target=TargetSpec(top_k=top_k, layer_norm="instance", final_norm="none"),
            loss=LossSpec(kind="l2", reduction="sum", scale=None),
            ema=_ema(preset, EmaSpec(0.999, 0.9999, 30_000)),
            collapse=_collapse(preset),
            speech=front,
        )
    # fairseq v2 audio: ALiBi attention biases (use_alibi_encoder; fixed slopes here, fairseq learns a
    # scale), and a teacher that averages the positional encoder but consumes the student's CNN
    # features (ema_local_encoder: false).
    encoder = replace(encoder, alibi=True)
    released_ema = EmaSpec(0.9997, 1.0, 300_000) if preset == "large" else EmaSpec(0.999, 0.99999, 75_000)
    decoder = {
        "tiny": DecoderSpec(dim=64, layers=2, kernel=7, groups=16),
        "base": DecoderSpec(dim=384, layers=4, kernel=7, groups=16),
        "large": DecoderSpec(dim=768, layers=4, kernel=7, groups=16),
    }[preset]
    return Data2VecSpec(
        modality="speech",
        version=2,
        encoder=encoder,
        # fairseq v2 audio: mask_prob 0.5 + adjust 0.05 (0.1 large) with span 5, span starts as in v1.
        mask=MaskSpec(kind="span", ratio=0.65 if preset == "large" else 0.55, span=5),
        target=TargetSpec(top_k=top_k, layer_norm="instance", final_norm="none"),
        loss=LossSpec(kind="l2", reduction="sum", scale=None),
        ema=_ema(preset, replace(released_ema, include_frontend=True, share_local_features=True)),
        collapse=_collapse(preset),
        decoder=decoder,
        clone_batch={"tiny": 2, "base": 8, "large": 12}[preset],
        speech=front,
    )


# ------------------------------------------------------------------------------------------- text


def text_spec(version: int, preset: str) -> Data2VecSpec:
    # RoBERTa-shaped post-LN encoder with learned positions (512) and a 50k vocabulary.
    encoder = _size(
        preset,
        EncoderSpec(dim=128, depth=4, heads=4, norm_first=False),
        EncoderSpec(dim=768, depth=12, heads=12, norm_first=False, dropout=0.1, attn_dropout=0.1),
        EncoderSpec(dim=1024, depth=24, heads=16, norm_first=False, dropout=0.1, attn_dropout=0.1),
    )
    front = TextFrontSpec(vocab_size=8000, max_positions=128) if preset == "tiny" else TextFrontSpec(50_000, 512)
    if version == 1:
        # Released config: span-4 masking of 35% (the paper's main row is BERT 15% 80/10/10:
        # mask={kind: bert, ratio: 0.15}); LN per layer over the top 10 FFN outputs; 2-layer head;
        # smooth L1 beta 4 summed over channels; tau annealed over 300k updates (paper: 100k).
        return Data2VecSpec(
            modality="text",
            version=1,
            encoder=encoder,
            mask=MaskSpec(kind="span", ratio=0.35, span=4),
            target=TargetSpec(top_k={"tiny": 3, "base": 10, "large": 20}[preset], layer_norm="layer", final_norm="none"),
            loss=LossSpec(kind="smooth_l1", beta=4.0, reduction="sum", scale=1.0),
            ema=_ema(preset, EmaSpec(0.999, 0.9999, 300_000)),
            collapse=_collapse(preset),
            head_layers=2,
            text=front,
        )
    return Data2VecSpec(
        modality="text",
        version=2,
        encoder=encoder,
        mask=MaskSpec(kind="random", ratio=0.48),
        target=TargetSpec(top_k={"tiny": 4, "base": 12, "large": 24}[preset], layer_norm="instance", final_norm="none"),
        loss=LossSpec(kind="l2", reduction="sum", scale=1.0),
        ema=_ema(preset, EmaSpec(0.9999, 0.99999, 100_000)),
        collapse=_collapse(preset),
        decoder=DecoderSpec(
            dim=encoder.dim, layers=2 if preset == "tiny" else 5, kernel=9, groups=1, residual=False, projection_layers=2
        ),
        clone_batch=2 if preset == "tiny" else 8,
        text=front,
    )


def _ema(preset: str, released: EmaSpec) -> EmaSpec:
    # A few hundred CPU steps cannot wait for tau ~ 0.9999: the tiny teacher follows faster.
    if preset == "tiny":
        return replace(released, tau0=0.99, tau_end=0.999, anneal_steps=1000)
    return released


def _collapse(preset: str) -> CollapseSpec:
    # fairseq aborts after 5k updates; the tiny demo is shorter than that, so it checks from step 200.
    return CollapseSpec(warmup_steps=200) if preset == "tiny" else CollapseSpec()


SPEC_BUILDERS = {"image": image_spec, "speech": speech_spec, "text": text_spec}


# ---------------------------------------------------------------------------------------- builder


def model_spec(modality: str, choice: ModelChoice, vocab_size: int | None = None) -> Data2VecSpec:
    """The preset's spec with params overrides applied (and the tokenizer's vocabulary for text)."""
    if modality not in SPEC_BUILDERS:
        raise ConfigError(f"unknown modality {modality!r} (expected one of: {', '.join(SPEC_BUILDERS)})")
    if choice.preset not in PRESETS:
        raise ConfigError(f"model.{modality}.preset: unknown preset {choice.preset!r} (expected one of: {', '.join(PRESETS)})")
    spec = SPEC_BUILDERS[modality](choice.version, choice.preset)
    if vocab_size is not None and spec.text is not None:
        spec = replace(spec, text=replace(spec.text, vocab_size=vocab_size))
    return with_overrides(spec, choice.overrides, path=f"model.{modality}.overrides")


def build_frontend(spec: Data2VecSpec) -> Frontend:
    if spec.modality == "image" and spec.image is not None:
        return ImageFrontend(spec.image, spec.encoder.dim, learned_mask=spec.version == 1)
    if spec.modality == "speech" and spec.speech is not None:
        return SpeechFrontend(spec.speech, spec.encoder.dim, spec.version == 1, spec.encoder.dropout)
    if spec.modality == "text" and spec.text is not None:
        return TextFrontend(spec.text, spec.encoder.dim, spec.mask)
    raise ConfigError(f"model spec for {spec.modality!r} has no `{spec.modality}` front-end section")


def build_model(spec: Data2VecSpec) -> Data2Vec:
    return Data2Vec(spec, build_frontend(spec))


def registered_presets() -> list[tuple[str, int, str]]:
    return [(m, v, p) for m in SPEC_BUILDERS for v in (1, 2) for p in PRESETS]
