"""Typed view of the `pretrain` section of params.yaml: one training recipe per modality.

Effective batch = batch_size x grad_accum x world size. Steps count optimizer updates (skipped
non-finite updates included), so the lr schedule and the data position stay a function of the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from d2v.errors import ConfigError
from d2v.layout import MODALITIES


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe of one modality."""

    batch_size: int  # per process, per micro-batch
    grad_accum: int  # micro-batches per optimizer update
    max_steps: int  # optimizer updates
    lr: float  # peak learning rate
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    schedule: Literal["cosine", "tri_stage"]
    warmup_steps: int  # cosine only: linear warm-up length
    # tri_stage only: fractions of max_steps for warm-up / hold / decay (sum to 1).
    tri_stage: tuple[float, float, float]
    min_lr: float  # cosine: floor; tri_stage: start of warm-up and end of the (exponential) decay
    grad_clip: float | None  # max global grad norm; null = no clipping
    checkpoint_every: int  # steps between checkpoints (one is always written at the end)
    keep_last: int  # checkpoints kept as checkpoint-step<N>.pt beside checkpoint.pt (the latest); 1 = none
    log_every: int  # steps between progress lines (metrics rows are written every step)
    compile: bool  # torch.compile the model's forward
    num_workers: int  # DataLoader worker processes (0 = load in the training process)
    max_consecutive_nonfinite: int  # NaN/inf updates in a row tolerated before stopping


@dataclass(frozen=True)
class SpeechTrainConfig(TrainConfig):
    """The speech recipe: batches are `batch_size` crops of `crop_seconds` each (d2v.data.packing)."""

    # Length of every pretraining crop, cut from the shuffled, concatenated, per-utterance-normalised
    # stream of utterances. Audio per batch = batch_size x crop_seconds.
    crop_seconds: float

    def crop_samples(self, sample_rate: int) -> int:
        return int(round(self.crop_seconds * sample_rate))


CHECKPOINT_STORE_SCHEMES = ("s3://", "file://")
ARTIFACT_STORE = "artifacts"  # pretrain.checkpoint_store: the store the `artifacts` section configures


@dataclass(frozen=True)
class PretrainConfig:
    """`pretrain` section: a seed (null = the top-level `seed`), one recipe per modality, and where
    checkpoints are mirrored (d2v/train/checkpoint_store.py)."""

    seed: int | None
    image: TrainConfig
    speech: SpeechTrainConfig
    text: TrainConfig
    # null: checkpoints stay on local disk only. `s3://bucket/prefix`, `file://dir`, or "artifacts"
    # (the artifact store): rank 0 also mirrors every checkpoint there, and --resume fetches it when
    # the local one is missing or older. Endpoint, credentials and retries: the `artifacts` section.
    checkpoint_store: str | None = None

    def __post_init__(self) -> None:
        for modality in MODALITIES:
            validate_train_config(getattr(self, modality), f"pretrain.{modality}")
        validate_checkpoint_store(self.checkpoint_store)

    def for_modality(self, modality: str) -> TrainConfig:
        if modality not in MODALITIES:
            raise ConfigError(f"pretrain: unknown modality {modality!r} (expected {', '.join(MODALITIES)})")
        cfg: TrainConfig = getattr(self, modality)
        return cfg

    def resolve_seed(self, base_seed: int) -> int:
        return base_seed if self.seed is None else self.seed


def validate_checkpoint_store(value: str | None, path: str = "pretrain.checkpoint_store") -> None:
    """null, "artifacts", or a URI with a location after the scheme."""
    if value is None or value == ARTIFACT_STORE:
        return
    scheme = next((s for s in CHECKPOINT_STORE_SCHEMES if value.startswith(s)), None)
    if scheme is None or not value[len(scheme):].strip("/"):
        raise ConfigError(f"{path}: {value!r}: expected null, {ARTIFACT_STORE!r}, s3://<bucket>/<prefix> "
                          "or file://<dir>")


def validate_train_config(cfg: TrainConfig, path: str = "pretrain") -> None:
    """Check value ranges the type checker cannot; errors name `path.<field>`."""
    try:
        _check_ranges(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}.{exc}") from None


def _check_ranges(cfg: TrainConfig) -> None:
    positive = {
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "max_steps": cfg.max_steps,
        "checkpoint_every": cfg.checkpoint_every,
        "keep_last": cfg.keep_last,
        "log_every": cfg.log_every,
        "max_consecutive_nonfinite": cfg.max_consecutive_nonfinite,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name}: expected an integer >= 1, got {value}")
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers: expected >= 0, got {cfg.num_workers}")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"warmup_steps: expected >= 0, got {cfg.warmup_steps}")
    if not cfg.lr > 0 or not 0 <= cfg.min_lr <= cfg.lr:
        raise ConfigError(f"lr/min_lr: expected lr > 0 and 0 <= min_lr <= lr, got {cfg.lr}/{cfg.min_lr}")
    if not all(0 <= b < 1 for b in cfg.betas) or cfg.eps <= 0 or cfg.weight_decay < 0:
        raise ConfigError(
            f"betas/eps/weight_decay: expected betas in [0, 1), eps > 0, weight_decay >= 0, "
            f"got {list(cfg.betas)}/{cfg.eps}/{cfg.weight_decay}"
        )
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ConfigError(f"grad_clip: expected > 0 or null, got {cfg.grad_clip}")
    if any(f < 0 for f in cfg.tri_stage) or abs(sum(cfg.tri_stage) - 1.0) > 1e-6:
        raise ConfigError(f"tri_stage: expected 3 fractions >= 0 summing to 1, got {list(cfg.tri_stage)}")
    if cfg.schedule == "tri_stage" and cfg.min_lr <= 0:
        raise ConfigError("min_lr: tri_stage decays exponentially to min_lr, so it must be > 0")
    # A crop must hold at least one frame of the speech front end (400 samples = 25 ms at 16 kHz).
    if isinstance(cfg, SpeechTrainConfig) and not cfg.crop_seconds >= 0.025:
        raise ConfigError(f"crop_seconds: expected >= 0.025 (one 25 ms frame), got {cfg.crop_seconds}")
