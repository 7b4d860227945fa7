"""Frozen specifications of a data2vec model: one dataclass per component.

A `Data2VecSpec` fully describes a model (front end, Transformer, masking, targets, loss, EMA,
decoder). `d2v/models.py` resolves one from the released configuration, a size preset, the prepared
data's shape and `params.yaml` overrides; `d2v model show <modality>` prints the result. Every spec
is keyword-only: a field is always named where a spec is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from d2v.layout import Modality


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """Transformer encoder. pre-LN (`norm_first`, ViT/BEiT) or post-LN (wav2vec 2.0, RoBERTa)."""

    dim: int
    depth: int
    heads: int
    norm_first: bool
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # after attention / FFN, before the residual
    attn_dropout: float = 0.0
    activation_dropout: float = 0.0  # inside the FFN, after GELU
    layer_scale_init: float | None = None  # BEiT-style per-channel residual scale
    drop_path: float = 0.0  # stochastic depth, linearly increasing over depth
    layer_drop: float = 0.0  # probability of skipping a whole block while training the student
    norm_eps: float = 1e-5  # every LayerNorm of the encoder (fairseq v2 images: 1e-6)
    # ALiBi (data2vec 2.0 audio's use_alibi_encoder): every head adds -scale_h x slope_h x |i - j| to its
    # attention scores (ALiBi's slopes, 2^(-8h/heads) for a power-of-two head count), so attention
    # prefers nearby time steps. Positions are the original ones, also for the v2 student that only
    # sees the kept steps. alibi_learned_scale: scale_h is a parameter per head, initialised to 1 and
    # clamped at 0 (fairseq learned_alibi_scale_per_head); otherwise scale_h = 1.
    alibi: bool = False
    alibi_learned_scale: bool = False


@dataclass(frozen=True, kw_only=True)
class MaskSpec:
    """Where the student is masked. True = masked everywhere in d2v.

    kinds:
    - block (image v1, BEiT): rectangles of >= `min_block` patches until `ratio` of patches are masked
    - inverse_block (image v2, fairseq compute_block_mask_2d with inverse_mask): L x (1 - ratio +
      adjust) / span^2 block centres drawn with replacement, `span` x `span` blocks around them KEPT,
      then exactly int(L x (1 - ratio)) kept per row, the rest masked
    - block_1d (speech v2, compute_block_mask_1d): L x (ratio + adjust) / span centres drawn with
      replacement, `span` steps around each masked, then exactly int(L x ratio) masked per row
    - span (speech v1, text v1 span variant; compute_mask_indices): int(ratio x L / span + U) distinct
      span starts per sequence, each masking `span` steps (overlapping spans give less coverage:
      p=0.65, span 10 masks ~49%); every row then keeps the batch's smallest masked count
    - random (text v2): exactly L - int(L x (1 - ratio)) tokens, uniformly
    - bert (text v1, paper's main row): `ratio` of tokens; of those 80% [MASK], `bert_random` random
      tokens, `bert_keep` unchanged
    """

    kind: Literal["block", "inverse_block", "block_1d", "span", "random", "bert"]
    ratio: float
    span: int = 1
    min_block: int = 16
    adjust: float = 0.0  # inverse_block / block_1d: extra centres compensating for overlaps (mask_prob_adjust)
    bert_random: float = 0.1
    bert_keep: float = 0.1


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """Teacher targets: average of the top-K block outputs, each normalised without parameters."""

    top_k: int
    layer_norm: Literal["instance", "layer", "none"]  # per layer, before averaging
    final_norm: Literal["instance", "layer", "none"]  # on the average
    source: Literal["ffn", "block"] = "ffn"  # FFN output before the last residual, or block output


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """Regression loss at masked positions: per position, reduce over channels, scale, then mean."""

    kind: Literal["l2", "smooth_l1"]
    beta: float = 0.0  # smooth L1 transition point; ignored for l2
    reduction: Literal["sum", "mean"] = "sum"  # over the feature dimension
    scale: float | None = None  # None = 1/sqrt(D)
    # v2 images: the student's CLS output regresses the mean target over positions; as fairseq's
    # cls_loss x sample_size, the term is cls_weight x the SUM over rows of the per-row loss.
    cls_weight: float = 0.0


@dataclass(frozen=True, kw_only=True)
class EmaSpec:
    """Teacher decay tau: tau0 -> tau_end linearly over anneal_steps updates, then constant."""

    tau0: float
    tau_end: float
    anneal_steps: int
    include_frontend: bool = False  # v2 images: the teacher also averages the patch embedding
    # With include_frontend, v2 audio's teacher still consumes the student's local (CNN) features and
    # averages only what comes after them: the positional encoder (fairseq ema_local_encoder: false).
    share_local_features: bool = False


@dataclass(frozen=True, kw_only=True)
class CollapseSpec:
    """Abort when the (per-channel std averaged) target or prediction spread falls below a floor."""

    warmup_steps: int = 5000
    min_target_var: float = 0.1
    min_pred_var: float = 0.01


@dataclass(frozen=True, kw_only=True)
class DecoderSpec:
    """data2vec 2.0 convolutional decoder (1-D for sequences, 2-D for image grids)."""

    dim: int
    layers: int
    kernel: int
    groups: int = 1
    residual: bool = True  # every block adds its input when the widths match (the first: the decoder input)
    input_dropout: float = 0.0  # dropout on the decoder input (fairseq decoder.input_dropout)
    projection_layers: int = 1  # 2 = Linear-GELU-Linear (text v2)
    projection_ratio: float = 2.0  # width of the first hidden projection layer, x dim


@dataclass(frozen=True, kw_only=True)
class ImageFrontSpec:
    image_size: int
    patch_size: int
    in_chans: int = 3
    # sincos: fixed 2-D sin-cos table, not trained (data2vec 2.0, MAE); relative_bias: no absolute
    # positions, one relative position bias table shared by every block (data2vec_vision / BEiT,
    # version 1 only); learned: a trained absolute table, std 0.02 (ViT).
    positions: Literal["sincos", "relative_bias", "learned"] = "sincos"
    cls_init_std: float = 0.02  # fairseq v2 images draw the CLS token from N(0, 1)
    patch_init: Literal["xavier", "default"] = "default"  # v2: Xavier-uniform over the flattened kernel


@dataclass(frozen=True, kw_only=True)
class SpeechFrontSpec:
    # (channels, kernel, stride) per layer; the wav2vec 2.0 stack maps 16 kHz to 50 Hz frames.
    conv_layers: tuple[tuple[int, int, int], ...]
    conv_pos_kernel: int = 19
    conv_pos_groups: int = 16
    conv_pos_depth: int = 5
    # Read by the data pipeline, not the model: each utterance is normalised before cropping
    # (d2v.data.datasets.SpeechDataset), as in the released recipe.
    normalize_waveform: bool = True
    # fairseq's feature_grad_mult: scales the gradient reaching the CNN feature encoder. 0 freezes it
    # (and skips its backward pass); wav2vec 2.0 pretrains with 0.1.
    feature_grad_mult: float = 1.0
    # "cnn": the wav2vec 2.0 waveform CNN above (data2vec's choice). "log_mel": log-mel energies on the
    # same frame grid (window = the CNN's receptive field, hop = its total stride, bands = its output
    # channels) and no parameters; a CPU-scale alternative, since a CNN needs far more updates than a
    # demo has to learn spectral filters (docs/research/speech-diagnosis.md).
    feature_extractor: Literal["cnn", "log_mel"] = "cnn"


@dataclass(frozen=True, kw_only=True)
class TextFrontSpec:
    vocab_size: int
    max_positions: int = 512


@dataclass(frozen=True, kw_only=True)
class Data2VecSpec:
    modality: Modality
    version: Literal[1, 2]
    encoder: EncoderSpec
    mask: MaskSpec
    target: TargetSpec
    loss: LossSpec
    ema: EmaSpec
    collapse: CollapseSpec = CollapseSpec()
    decoder: DecoderSpec | None = None  # required for version 2
    clone_batch: int = 1  # v2 multi-mask: M masked copies per teacher pass
    head_layers: int = 1  # v1 regression head depth (text: 2)
    mask_noise_std: float = 0.01  # v2: masked decoder inputs are Gaussian noise
    image: ImageFrontSpec | None = None
    speech: SpeechFrontSpec | None = None
    text: TextFrontSpec | None = None
