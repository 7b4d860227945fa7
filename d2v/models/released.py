"""The released data2vec configurations at base size, one spec per (modality, version).

Values follow the authors' released code (fairseq `examples/data2vec` for 1.0 text/speech and all of
2.0, `data2vec_vision` for 1.0 images; shared reference `data2vec.md`). Where the paper and the
released code differ, the released code is the default and the paper's choice is one override away
(noted beside the field). Other sizes are changes on top of these (`d2v/models/presets.py`).
"""

from __future__ import annotations

from dataclasses import replace

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

# wav2vec 2.0 feature encoder: strides 5,2,2,2,2,2,2 and kernels 10,3,3,3,3,2,2 (16 kHz -> 50 Hz).
WAV2VEC_KERNEL_STRIDES = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))


def wav2vec_conv(channels: int) -> tuple[tuple[int, int, int], ...]:
    """The wav2vec 2.0 CNN's (channels, kernel, stride) per layer at `channels` width."""
    return tuple((channels, kernel, stride) for kernel, stride in WAV2VEC_KERNEL_STRIDES)


def released_spec(modality: str, version: int) -> Data2VecSpec:
    """The released base configuration of data2vec `version` for `modality`."""
    builders = {"image": (_image_v1, _image_v2), "speech": (_speech_v1, _speech_v2), "text": (_text_v1, _text_v2)}
    if modality not in builders:
        raise ConfigError(f"unknown modality {modality!r} (expected one of: {', '.join(builders)})")
    if version not in (1, 2):
        raise ConfigError(f"model.{modality}.version: {version!r} is not a data2vec version (expected 1 or 2)")
    return builders[modality][version - 1]()


# ------------------------------------------------------------------------------------------ image


def _image_v1() -> Data2VecSpec:
    # data2vec_vision (BEiT fork): pre-LN + layer-scale (LayerNorm eps 1e-6), a shared relative
    # position bias and no absolute positions, block-wise 60% masks, end-of-block targets (paper: FFN
    # output -> target.source=ffn), LN per layer + LN of the average, smooth L1 beta 2 averaged over
    # channels, constant tau 0.9998 on the whole model (timm ModelEmaV2: patch embedding, CLS token
    # and position bias included).
    return Data2VecSpec(
        modality="image",
        version=1,
        encoder=EncoderSpec(
            dim=768, depth=12, heads=12, norm_first=True, layer_scale_init=1e-4, drop_path=0.25, attn_dropout=0.05,
            norm_eps=1e-6,
        ),
        mask=MaskSpec(kind="block", ratio=0.6, min_block=16),
        target=TargetSpec(top_k=6, layer_norm="layer", final_norm="layer", source="block"),
        loss=LossSpec(kind="smooth_l1", beta=2.0, reduction="mean", scale=1.0),
        ema=EmaSpec(tau0=0.9998, tau_end=0.9998, anneal_steps=0, include_frontend=True),
        image=ImageFrontSpec(image_size=224, patch_size=16, in_chans=3, positions="relative_bias"),
    )


def _image_v2() -> Data2VecSpec:
    # data2vec 2.0 (config/v2/base_images_only_task.yaml): post-LN (LayerNorm eps 1e-6), fixed 2-D
    # sin-cos positions, CLS token drawn from N(0, 1), Xavier patch embedding; inverse block masks (80%,
    # 3x3 kept blocks); M=16 clones; targets = instance norm per layer over the top 10 of the 12
    # blocks (fairseq: 2 prenet + 10 shared, K=10 over the shared ones) + LN of the average; 2-D conv
    # decoder without input dropout; L2 / sqrt(D) + 0.01 CLS loss; the teacher averages the whole
    # model incl. patch embedding and CLS token; the collapse guard is off (min_target_var: 0).
    return Data2VecSpec(
        modality="image",
        version=2,
        encoder=EncoderSpec(dim=768, depth=12, heads=12, norm_first=False, norm_eps=1e-6),
        mask=MaskSpec(kind="inverse_block", ratio=0.8, span=3, adjust=0.07),
        target=TargetSpec(top_k=10, layer_norm="instance", final_norm="layer"),
        loss=LossSpec(kind="l2", reduction="sum", scale=None, cls_weight=0.01),
        ema=EmaSpec(tau0=0.9998, tau_end=0.99999, anneal_steps=100_000, include_frontend=True),
        collapse=CollapseSpec(min_target_var=0.0, min_pred_var=0.0),
        decoder=DecoderSpec(dim=768, layers=6, kernel=3, groups=16, input_dropout=0.0),
        clone_batch=16,
        image=ImageFrontSpec(
            image_size=224, patch_size=16, in_chans=3, positions="sincos", cls_init_std=1.0, patch_init="xavier"
        ),
    )


# ----------------------------------------------------------------------------------------- speech

# fairseq base_librispeech: post-LN, dropout 0.1, LayerDrop 0.05, 512-channel CNN, 5-layer conv
# positional encoder (kernel 19, 16 groups), instance-normed targets from the top 8 FFN outputs.
_SPEECH_ENCODER = EncoderSpec(dim=768, depth=12, heads=12, norm_first=False, dropout=0.1, attn_dropout=0.1, layer_drop=0.05)
_SPEECH_FRONT = SpeechFrontSpec(conv_layers=wav2vec_conv(512), conv_pos_depth=5)
_SPEECH_TARGET = TargetSpec(top_k=8, layer_norm="instance", final_norm="none")


def _speech_v1() -> Data2VecSpec:
    return Data2VecSpec(
        modality="speech",
        version=1,
        encoder=_SPEECH_ENCODER,
        mask=MaskSpec(kind="span", ratio=0.65, span=10),  # start prob 0.065 x span 10: ~49% masked
        target=_SPEECH_TARGET,
        loss=LossSpec(kind="l2", reduction="sum", scale=None),
        ema=EmaSpec(tau0=0.999, tau_end=0.9999, anneal_steps=30_000),
        speech=_SPEECH_FRONT,
    )


def _speech_v2() -> Data2VecSpec:
    # fairseq v2 audio (config/v2/base_audio_only_task.yaml): ALiBi attention biases with a learned
    # scale per head (use_alibi_encoder, learned_alibi_scale_per_head); block masks of 5 frames,
    # mask_prob 0.5 + adjust 0.05, exactly half the frames masked (compute_block_mask_1d); a teacher
    # that averages the positional encoder but consumes the student's CNN features (ema_local_encoder:
    # false); decoder input dropout 0.1.
    return Data2VecSpec(
        modality="speech",
        version=2,
        encoder=replace(_SPEECH_ENCODER, alibi=True, alibi_learned_scale=True),
        mask=MaskSpec(kind="block_1d", ratio=0.5, span=5, adjust=0.05),
        target=_SPEECH_TARGET,
        loss=LossSpec(kind="l2", reduction="sum", scale=None),
        ema=EmaSpec(tau0=0.999, tau_end=0.99999, anneal_steps=75_000, include_frontend=True, share_local_features=True),
        decoder=DecoderSpec(dim=384, layers=4, kernel=7, groups=16, input_dropout=0.1),
        clone_batch=8,
        speech=_SPEECH_FRONT,
    )


# ------------------------------------------------------------------------------------------- text

# RoBERTa-shaped post-LN encoder with learned positions (512) and a 50k vocabulary.
_TEXT_ENCODER = EncoderSpec(dim=768, depth=12, heads=12, norm_first=False, dropout=0.1, attn_dropout=0.1)
_TEXT_FRONT = TextFrontSpec(vocab_size=50_000, max_positions=512)


def _text_v1() -> Data2VecSpec:
    # Released config: span-4 masking of 35% (the paper's main row is BERT 15% 80/10/10:
    # mask={kind: bert, ratio: 0.15}); LN per layer over the top 10 FFN outputs; 2-layer head;
    # smooth L1 beta 4 summed over channels; tau annealed over 300k updates (paper: 100k).
    return Data2VecSpec(
        modality="text",
        version=1,
        encoder=_TEXT_ENCODER,
        mask=MaskSpec(kind="span", ratio=0.35, span=4),
        target=TargetSpec(top_k=10, layer_norm="layer", final_norm="none"),
        loss=LossSpec(kind="smooth_l1", beta=4.0, reduction="sum", scale=1.0),
        ema=EmaSpec(tau0=0.999, tau_end=0.9999, anneal_steps=300_000),
        head_layers=2,
        text=_TEXT_FRONT,
    )


def _text_v2() -> Data2VecSpec:
    return Data2VecSpec(
        modality="text",
        version=2,
        encoder=_TEXT_ENCODER,
        mask=MaskSpec(kind="random", ratio=0.48),
        target=TargetSpec(top_k=12, layer_norm="instance", final_norm="none"),
        loss=LossSpec(kind="l2", reduction="sum", scale=1.0),
        ema=EmaSpec(tau0=0.9999, tau_end=0.99999, anneal_steps=100_000),
        # config/v2/base_text_only_task.yaml: no residual, input dropout 0.1, Linear(768 -> 1536) ->
        # GELU -> Linear(1536 -> 768) projection.
        decoder=DecoderSpec(
            dim=768, layers=5, kernel=9, groups=1, residual=False, input_dropout=0.1, projection_layers=2, projection_ratio=2.0
        ),
        clone_batch=8,
        text=_TEXT_FRONT,
    )
