"""One pretraining run for one modality: prepared data + model preset + recipe -> checkpoint, metrics.

This binds the pieces the `pretrain@<modality>` stage needs (entry point: `d2v pretrain`):
the data readers of `d2v.data`, the model builder of `d2v.models` and the loop of `d2v.train.loop`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from d2v.artifacts.config import ArtifactsConfig
from d2v.config import ModelChoice
from d2v.core.data2vec import Data2Vec
from d2v.core.types import PAD_ID, SPEECH_SAMPLE_RATE
from d2v.data.datasets import ImageCollate, ImageDataset, SpeechDataset, TextBlockDataset
from d2v.data.packing import PackedSpeechCrops, stack_crops
from d2v.errors import D2VError
from d2v.models import DataShape, build_model, fingerprint_preset, model_spec
from d2v.train.checkpoint import ModelFingerprint, load_checkpoint
from d2v.train.config import SpeechTrainConfig, TrainConfig
from d2v.train.distributed import init_distributed
from d2v.train.loop import RunPaths, pretrain
from d2v.train.run_identity import run_identity

PRETRAIN_SPLIT = "train"


@dataclass(frozen=True)
class PretrainData:
    dataset: Dataset
    collate: Callable[[list[Any]], dict[str, torch.Tensor]]


def build_pretraining_model(modality: str, choice: ModelChoice, data_root: Path) -> Data2Vec:
    """The model `d2v model show` describes: the resolved spec for the prepared data's shape."""
    return build_model(model_spec(modality, choice, prepared_shape(modality, data_root)))


def _initial_checkpoint(choice: ModelChoice, init_checkpoint: Path | None) -> Path | None:
    """The checkpoint a run's weights start from, as run_pretraining picks it."""
    if init_checkpoint is not None:
        return init_checkpoint
    return Path(choice.init_from) if choice.init_from is not None else None


def load_init_from(model: Data2Vec, path: Path, key: str) -> None:
    """Student and teacher weights from an imported checkpoint (the EMA counter restarts at 0)."""
    state = load_checkpoint(path)["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise D2VError(f"{key}: {path} does not fit the model built from params: {' '.join(str(exc).split())[:400]}") from None


def prepared_meta(data_root: Path) -> dict[str, Any]:
    """`meta.json` of a prepared modality (written by the prepare / tokenize stages)."""
    path = data_root / "meta.json"
    if not path.is_file():
        raise D2VError(f"{path}: not found (run the prepare / tokenize stages first)")
    return json.loads(path.read_text(encoding="utf-8"))


def prepared_shape(modality: str, data_root: Path) -> DataShape:
    """Image size and channels, or the text vocabulary, of the prepared data (its meta.json)."""
    path = data_root / "meta.json"
    shape = DataShape.from_meta(prepared_meta(data_root), source=str(path))
    if modality == "text" and shape.vocab_size is None:
        raise D2VError(f"{path}: no 'vocab_size' key (run the tokenize stage)")
    if modality == "image" and (shape.image_size is None or shape.channels is None):
        raise D2VError(f"{path}: expected 'height', 'width' and 'channels' keys (run the prepare stage)")
    return shape


def pretraining_data(modality: str, data_root: Path, model: Data2Vec, cfg: TrainConfig, seed: int) -> PretrainData:
    if modality == "image":
        return _image_data(data_root, model)
    if modality == "speech":
        return _speech_data(data_root, model, cfg, seed)
    if modality == "text":
        assert model.spec.text is not None
        dataset = TextBlockDataset(data_root, PRETRAIN_SPLIT, model.spec.text.max_positions)
        return PretrainData(dataset, stack_text_blocks)
    raise D2VError(f"unknown modality {modality!r}")


def _speech_data(data_root: Path, model: Data2Vec, cfg: TrainConfig, seed: int) -> PretrainData:
    """Fixed-length crops packed from whole utterances, each normalised before packing when the
    model asks for normalised waveforms (d2v.data.packing: why packing, not fairseq's buckets)."""
    assert model.spec.speech is not None
    if not isinstance(cfg, SpeechTrainConfig):
        raise D2VError(f"pretrain.speech: expected a speech recipe with crop_seconds, got {type(cfg).__name__}")
    utterances = SpeechDataset(data_root, PRETRAIN_SPLIT, normalize=model.spec.speech.normalize_waveform)
    crops = PackedSpeechCrops(utterances, cfg.crop_samples(SPEECH_SAMPLE_RATE), seed)
    return PretrainData(crops, stack_crops)


def _image_data(data_root: Path, model: Data2Vec) -> PretrainData:
    assert model.spec.image is not None
    meta = prepared_meta(data_root)
    if int(meta["channels"]) != model.spec.image.in_chans:
        raise D2VError(
            f"{data_root / 'meta.json'}: images have {meta['channels']} channels but model.image expects "
            f"{model.spec.image.in_chans} (model.image.overrides.image.in_chans overrides the data's channels: remove it)"
        )
    # data2vec 2.0 / MAE augmentation: one random resized crop + flip, seen by student and teacher.
    augment = v2.Compose(
        [v2.RandomResizedCrop(model.spec.image.image_size, scale=(0.2, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    )
    dataset = ImageDataset(data_root, PRETRAIN_SPLIT, transform=lambda hwc: _augment_hwc(hwc, augment))
    return PretrainData(dataset, ImageCollate(meta["mean"], meta["std"]))


def _augment_hwc(image: np.ndarray, augment: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    # A C-ordered copy: the shard's pixels are a read-only view, which torch warns about (the demo's
    # only warning); one 28 x 28 image is 784 bytes to copy.
    chw = torch.from_numpy(np.array(image, order="C")).permute(2, 0, 1)  # (C, H, W) uint8
    return augment(chw).permute(1, 2, 0).numpy()


def stack_text_blocks(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    tokens = torch.stack(items)  # (B, T)
    return {"tokens": tokens, "padding_mask": tokens.eq(PAD_ID)}


def run_pretraining(
    modality: str,
    choice: ModelChoice,
    cfg: TrainConfig,
    *,
    data_root: Path,
    checkpoint: Path,
    metrics_dir: Path,
    seed: int,
    resume: bool = False,
    init_checkpoint: Path | None = None,
    checkpoint_store: ArtifactsConfig | None = None,
) -> dict[str, Any]:
    """Pretrain one modality; returns the summary that `metrics/pretrain/<modality>/metrics.json` holds.

    `init_checkpoint` warm-starts: student and teacher weights come from that checkpoint (it must be
    of the same model), optimizer and schedule start fresh. `resume` continues this run's own
    checkpoint exactly and takes precedence. `checkpoint_store` (resolve_checkpoint_store of
    pretrain.checkpoint_store): where checkpoints are mirrored and `resume` looks for a newer one.
    """
    torch.manual_seed(seed)  # the model's initial weights
    model = build_pretraining_model(modality, choice, data_root)
    data = pretraining_data(modality, data_root, model, cfg, seed)
    fingerprint = ModelFingerprint.of(modality, choice.version, fingerprint_preset(choice), model.spec)
    if init_checkpoint is not None:
        model.load_state_dict(load_checkpoint(init_checkpoint, expected=fingerprint)["model"])
    elif choice.init_from is not None:
        # model.<modality>.init_from: the imported student and teacher; params overrides may have
        # changed the recipe (masking, targets) but not the weights' shapes.
        load_init_from(model, Path(choice.init_from), f"model.{modality}.init_from")
    return pretrain(
        model,
        data.dataset,
        cfg,
        modality=modality,
        fingerprint=fingerprint,
        seed=seed,
        paths=RunPaths(checkpoint=checkpoint, metrics_dir=metrics_dir),
        env=init_distributed(),
        collate_fn=data.collate,
        resume=resume,
        run_id=run_identity(fingerprint, cfg, seed, data_root, init=_initial_checkpoint(choice, init_checkpoint)),
        checkpoint_store=checkpoint_store,
    )
