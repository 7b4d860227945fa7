"""Speech pretraining crops packed from whole utterances (d2v.data.packing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from d2v.data.datasets import SpeechDataset, normalize_utterance
from d2v.data.packing import PackedSpeechCrops, stack_crops
from d2v.errors import D2VError

from speech_prepared import stored, write_prepared_speech


class Numbered:
    """Utterance u holds the samples u * 1000 + 0, 1, 2, ...: every sample names where it came from."""

    def __init__(self, lengths: list[int]) -> None:
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def n_samples(self, i: int) -> int:
        return self.lengths[i]

    def waveform(self, i: int) -> np.ndarray:
        return (i * 1000 + np.arange(self.lengths[i])).astype(np.float32)


LENGTHS = [37, 5, 120, 64, 9, 80, 33]  # 348 samples, some shorter than a crop


def _all_crops(crops: PackedSpeechCrops) -> list[np.ndarray]:
    return [crops[i] for i in range(len(crops))]


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_crops_tile_the_epochs_shuffled_stream_of_whole_utterances(epoch: int) -> None:
    source = Numbered(LENGTHS)
    crops = PackedSpeechCrops(source, crop_samples=40, seed=3)
    crops.set_epoch(epoch)
    assert len(crops) == 348 // 40 - 1 and sorted(crops.order.tolist()) == list(range(len(LENGTHS)))
    assert 0 <= crops.offset < 40
    stream = np.concatenate([source.waveform(int(u)) for u in crops.order])
    got = _all_crops(crops)
    assert all(c.shape == (40,) and c.dtype == np.float32 for c in got)
    expected = stream[crops.offset : crops.offset + 40 * len(crops)]
    np.testing.assert_array_equal(np.concatenate(got), expected)


def test_crops_are_a_function_of_seed_epoch_and_index() -> None:
    walked = PackedSpeechCrops(Numbered(LENGTHS), crop_samples=40, seed=3)
    for epoch in range(4):  # a run that went through epochs 0..3, then resumed into epoch 2
        walked.set_epoch(epoch)
    walked.set_epoch(2)
    fresh = PackedSpeechCrops(Numbered(LENGTHS), crop_samples=40, seed=3)
    fresh.set_epoch(2)
    for a, b in zip(_all_crops(walked), _all_crops(fresh)):
        np.testing.assert_array_equal(a, b)
    other_epoch = PackedSpeechCrops(Numbered(LENGTHS), crop_samples=40, seed=3)
    other_seed = PackedSpeechCrops(Numbered(LENGTHS), crop_samples=40, seed=4)
    other_seed.set_epoch(2)
    assert not np.array_equal(np.stack(_all_crops(fresh)), np.stack(_all_crops(other_epoch)))
    assert not np.array_equal(np.stack(_all_crops(fresh)), np.stack(_all_crops(other_seed)))


def test_too_little_audio_for_two_crops_names_the_knob() -> None:
    with pytest.raises(D2VError, match=r"do not fill two crops of 200 samples.*pretrain\.speech\.crop_seconds"):
        PackedSpeechCrops(Numbered([150, 200]), crop_samples=200, seed=0)
    with pytest.raises(IndexError, match=r"crop 3 out of range \(0\.\.2\)"):
        PackedSpeechCrops(Numbered([150, 250]), crop_samples=100, seed=0)[3]  # 400 // 100 - 1 crops


def test_stack_crops_makes_an_unpadded_waveform_batch() -> None:
    batch = stack_crops([np.zeros(6, np.float32), np.ones(6, np.float32)])
    assert set(batch) == {"waveform"} and batch["waveform"].shape == (2, 6)
    assert batch["waveform"][1].sum() == 6


def _quiet_then_loud(rng: np.random.Generator, n: int) -> np.ndarray:
    """First half at 1/10 of the second half's scale: the utterance's statistics are the loud half's."""
    return np.concatenate([0.05 * rng.standard_normal(n // 2), 0.5 * rng.standard_normal(n - n // 2)]).clip(-0.99, 0.99)


def test_pretraining_crops_are_cut_from_utterances_normalised_whole(tmp_path: Path) -> None:
    """Normalisation before cropping (the released recipe), not after: a crop of a quiet stretch
    stays quiet. Normalising each crop instead would give every crop unit variance."""
    rng = np.random.default_rng(0)
    waves = [_quiet_then_loud(rng, 4000) for _ in range(3)]
    root = write_prepared_speech(tmp_path / "speech", {"train": waves})
    crops = PackedSpeechCrops(SpeechDataset(root, "train", normalize=True), crop_samples=500, seed=0)
    normalised_stream = np.concatenate([normalize_utterance(stored(waves[int(u)])) for u in crops.order])
    raw_stream = np.concatenate([stored(waves[int(u)]) for u in crops.order])
    quiet_crops = 0
    for i in range(len(crops)):
        window = slice(crops.offset + 500 * i, crops.offset + 500 * (i + 1))
        np.testing.assert_allclose(crops[i], normalised_stream[window], rtol=1e-5, atol=1e-6)
        if np.abs(raw_stream[window]).max() < 0.3:  # inside a quiet half
            quiet_crops += 1
            assert crops[i].std() < 0.2  # normalised with its utterance: still quiet (~0.14)
            assert normalize_utterance(raw_stream[window]).std() == pytest.approx(1.0, abs=0.01)
    assert quiet_crops >= 3  # the test saw crops where the two orders differ


def test_normalize_utterance_gives_zero_mean_unit_variance() -> None:
    wave = 0.3 * np.random.default_rng(1).standard_normal(1000).astype(np.float32) + 0.2
    out = normalize_utterance(wave)
    assert out.dtype == np.float32 and abs(out.mean()) < 1e-5 and out.std() == pytest.approx(1.0, abs=1e-4)
    assert normalize_utterance(np.zeros(5, np.float32)).tolist() == [0.0] * 5  # silence stays finite
