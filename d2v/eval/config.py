"""The `evaluate` section of params.yaml: downstream budgets per modality.

Paper recipes (reference/data2vec.md) scaled down for the embedded tiny profile: the values in
params.yaml finish each evaluation well under a minute on 2 CPU cores for a tiny model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from d2v.errors import ConfigError

Pooling = Literal["mean", "cls"]
Device = Literal["auto", "cpu", "cuda"]  # auto: cuda when torch sees one, else cpu
Precision = Literal["auto", "fp32", "bf16"]  # auto: bf16 autocast on cuda, fp32 on cpu


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"evaluate.{key}: {message}")


@dataclass(frozen=True)
class LinearProbeConfig:
    """A linear classifier on frozen, pooled, standardised features (AdamW, cosine decay).

    One classifier per value of `weight_decays`; with more than one, the value whose classifier
    scores best on a subset of the valid split is kept, separately for each encoder."""

    epochs: int
    lr: float
    batch_size: int  # 0 = full batch (one step per epoch)
    weight_decays: tuple[float, ...]
    n_train: int | None  # a deterministic subset of the train split; null = all of it
    n_valid: int | None  # the valid subset that picks the weight decay; null = all of it

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "image.linear_probe.epochs", f"must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 0, "image.linear_probe.batch_size", "must be >= 0 (0 = full batch)")
        _require(len(self.weight_decays) >= 1, "image.linear_probe.weight_decays", "must list at least one value")
        _require(all(w >= 0 for w in self.weight_decays), "image.linear_probe.weight_decays",
                 f"must all be >= 0, got {self.weight_decays}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Full fine-tuning of encoder + head: AdamW, linear warmup then cosine, layer-wise lr decay."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    layer_decay: float  # lr scale per block counted from the head: 1.0 = off, paper ViT-B 0.65
    label_smoothing: float  # classification only
    warmup_fraction: float  # of all updates
    n_train: int | None  # null = the whole train split

    def __post_init__(self) -> None:
        _require(self.epochs >= 1 and self.batch_size >= 1, "finetune", "epochs and batch_size must be >= 1")
        _require(0 < self.layer_decay <= 1, "finetune.layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        _require(0 <= self.label_smoothing < 1, "finetune.label_smoothing", "must be in [0, 1)")
        _require(0 <= self.warmup_fraction < 1, "finetune.warmup_fraction", "must be in [0, 1)")


@dataclass(frozen=True)
class ImageAugmentConfig:
    """Train-time augmentation for image fine-tuning (the paper's crop + flip; applied per batch)."""

    random_resized_crop: bool
    crop_scale_min: float  # smallest crop area fraction (paper: 0.08 fine-tune, 0.2 pretrain)
    hflip: bool

    def __post_init__(self) -> None:
        _require(0 < self.crop_scale_min <= 1, "image.augment.crop_scale_min", "must be in (0, 1]")


@dataclass(frozen=True)
class ImageEvalConfig:
    pooling: Pooling  # mean over patches (data2vec's linear probe) or the CLS output
    n_test: int | None  # null = the whole test split
    seed: int
    linear_probe: LinearProbeConfig
    finetune: FinetuneConfig
    augment: ImageAugmentConfig


@dataclass(frozen=True)
class TextEvalConfig:
    """GLUE-style fine-tuning, one run per task (single sentences and pairs come pre-encoded)."""

    tasks: tuple[str, ...]
    pooling: Pooling
    max_len: int  # tokens per example, pairs included; longer inputs are truncated by the reader
    n_test: int | None
    seed: int
    finetune: FinetuneConfig
    # Training batches of similar-length examples (fairseq batches by size): the same examples per
    # epoch with far less padding. false: uniformly random batches.
    length_buckets: bool

    def __post_init__(self) -> None:
        _require(len(self.tasks) > 0, "text.tasks", "list at least one task")
        _require(self.max_len >= 8, "text.max_len", f"must be >= 8, got {self.max_len}")


@dataclass(frozen=True)
class SpeechEvalConfig:
    """CTC fine-tuning on letters (wav2vec 2.0 recipe: frozen CNN, tri-stage lr, greedy decoding)."""

    steps: int
    lr: float  # peak of the tri-stage schedule
    batch_size: int
    weight_decay: float
    freeze_feature_encoder: bool  # paper: feature_grad_mult 0
    freeze_encoder_steps: int  # first updates train only the CTC head (wav2vec 2.0's freeze_finetune_updates)
    tri_stage: tuple[float, float, float]  # warmup / hold / decay fractions of `steps` (paper 0.1/0.4/0.5)
    init_lr_scale: float  # lr at the start of warmup, as a fraction of the peak
    final_lr_scale: float  # lr at the end of decay
    n_train: int | None
    n_test: int | None
    seed: int

    def __post_init__(self) -> None:
        _require(self.steps >= 1 and self.batch_size >= 1, "speech", "steps and batch_size must be >= 1")
        _require(
            all(f >= 0 for f in self.tri_stage) and abs(sum(self.tri_stage) - 1) < 1e-6,
            "speech.tri_stage",
            f"three non-negative fractions summing to 1, got {list(self.tri_stage)}",
        )
        _require(self.freeze_encoder_steps >= 0, "speech.freeze_encoder_steps", "must be >= 0")


@dataclass(frozen=True)
class EvaluateConfig:
    # Pretrained and random-init runs at the same time in two single-threaded processes where this
    # process has at most 2 intra-op threads (d2v/eval/side_by_side.py; ~1.25x faster on 2 cores);
    # with more threads, and with false, one after the other. A CPU trick: on cuda, with loader
    # workers or with compile the runs go one after the other (d2v/eval/device.py says why).
    side_by_side: bool
    image: ImageEvalConfig
    text: TextEvalConfig
    speech: SpeechEvalConfig
    # Where and how every procedure runs (d2v/eval/device.py). The defaults are the CPU demo's:
    # on a machine without CUDA they change nothing, so params files written before them still load.
    device: Device = "auto"
    precision: Precision = "auto"  # encoder forward passes only; heads, losses and metrics stay fp32
    num_workers: int = 0  # DataLoader worker processes per loader; 0 = load in this process
    compile: bool = False  # torch.compile the encoder's forward (fine-tuning, CTC, feature extraction)

    def __post_init__(self) -> None:
        _require(self.num_workers >= 0, "num_workers", f"must be >= 0 (0 = load in process), got {self.num_workers}")
