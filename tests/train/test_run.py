"""Pretraining data as the pretrain stages build it (d2v.train.run): speech crops through the loop, image pixels."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from d2v.config import ModelChoice
from d2v.core.types import Data2VecOutput
from d2v.data.datasets import SpeechDataset
from d2v.data.packing import PackedSpeechCrops
from d2v.errors import D2VError
from d2v.models import build_model, model_spec
from d2v.train._selftest import DIM, FINGERPRINT, StandInModel, tiny_config
from d2v.train.checkpoint import load_checkpoint
from d2v.train.config import SpeechTrainConfig
from d2v.train.distributed import DistEnv
from d2v.train.loop import RunPaths, pretrain
from d2v.train.run import _augment_hwc, pretraining_data

from speech_prepared import write_prepared_speech

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def _prepared(tmp_path: Path, lengths: list[int]) -> Path:
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n) for n in lengths]
    return write_prepared_speech(tmp_path / "speech", {"train": waves})


def _speech_config(**overrides: object) -> SpeechTrainConfig:
    return SpeechTrainConfig(**{**vars(tiny_config()), "crop_seconds": 0.5, **overrides})  # type: ignore[arg-type]


def test_stage_packs_normalised_crops_of_crop_seconds(tmp_path: Path) -> None:
    root = _prepared(tmp_path, [16_000, 9_000, 30_000, 4_000])  # 3.6 s
    torch.manual_seed(0)
    model = build_model(model_spec("speech", ModelChoice(2, "tiny")))
    data = pretraining_data("speech", root, model, _speech_config(crop_seconds=0.5), seed=0)
    assert isinstance(data.dataset, PackedSpeechCrops) and len(data.dataset) == 59_000 // 8_000 - 1
    assert data.dataset.utterances.normalize is model.spec.speech.normalize_waveform is True
    batch = data.collate([data.dataset[i] for i in range(4)])
    assert batch["waveform"].shape == (4, 8_000) and "padding_mask" not in batch
    with pytest.raises(D2VError, match="expected a speech recipe with crop_seconds"):
        pretraining_data("speech", root, model, tiny_config(), seed=0)


class WaveStandIn(StandInModel):
    """The loop's stand-in model on waveform batches (crops of DIM samples); records what it read."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, batch, generator=None) -> Data2VecOutput:
        self.seen.append(batch["waveform"].clone())
        return super().forward({"x": batch["waveform"]}, generator)


class DiesAfter(WaveStandIn):
    def __init__(self, updates: int) -> None:
        super().__init__()
        self.updates = updates

    def ema_step(self) -> None:
        super().ema_step()
        if int(self.num_updates) == self.updates:
            raise KeyboardInterrupt


def _run(out: Path, root: Path, model: WaveStandIn, resume: bool = False) -> None:
    # 7 utterances of 29 samples: 203 // 8 - 1 = 24 crops, 3 updates of 2 x 4 crops per epoch, so
    # 8 updates cross two epoch boundaries (each reshuffles the utterances and moves the offset).
    crops = PackedSpeechCrops(SpeechDataset(root, "train", normalize=True), crop_samples=DIM, seed=0)
    pretrain(
        model, crops, replace(tiny_config(), max_steps=8, checkpoint_every=4), modality="speech",
        fingerprint=replace(FINGERPRINT, modality="speech"), seed=0,
        paths=RunPaths(out / "ckpt.pt", out / "metrics"), env=CPU, collate_fn=lambda items: {
            "waveform": torch.from_numpy(np.stack(items))}, resume=resume,
    )


def _seeded(cls=WaveStandIn, *args) -> WaveStandIn:
    torch.manual_seed(0)
    return cls(*args)


def test_resumed_run_reads_the_same_crops_and_ends_with_the_same_weights(tmp_path: Path) -> None:
    root = _prepared(tmp_path, [29] * 7)
    straight = _seeded()
    _run(tmp_path / "straight", root, straight)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", root, _seeded(DiesAfter, 6))
    assert load_checkpoint(tmp_path / "cut" / "ckpt.pt")["step"] == 4
    resumed = _seeded()
    _run(tmp_path / "cut", root, resumed, resume=True)
    # Updates 5..8 (micro-batches 8..15) of the straight run are what the resumed run read.
    assert len(straight.seen) == 16 and len(resumed.seen) == 8
    for a, b in zip(straight.seen[8:], resumed.seen):
        assert torch.equal(a, b)
    assert len({tuple(t.flatten().tolist()) for t in straight.seen}) == 16  # epochs do not repeat batches
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_image_augmentation_reads_read_only_shard_pixels_without_a_warning() -> None:
    """Shard pixels arrive as read-only views; the augmentation hands torch a copy. torch warns once
    per process, so the copy itself is what is checked: an augmentation that returns its input
    would otherwise give back a view of the shard."""
    pixels = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1)
    pixels.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" UserWarning, when it is the first
        out = _augment_hwc(pixels, lambda chw: chw)
    assert np.array_equal(out, pixels) and not np.shares_memory(out, pixels)

