"""The evaluate stage (d2v.eval.stage): the ASR splits read as the model expects them, and the
per-task table for `dvc plots` (the existing columns first, then the input baseline)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from d2v.config import ModelChoice
from d2v.data.datasets import SpeechCollate, normalize_utterance
from d2v.eval.record import BaselineRecord
from d2v.eval.ctc import FrozenFeatureSplit, with_transcripts
from d2v.eval.stage import speech_splits, write_task_table
from d2v.models import build_model, model_spec

from speech_prepared import stored, write_prepared_speech


def _utterances(seed: int, lengths: list[int]) -> list[np.ndarray]:
    """Quiet first half, loud second half, and a DC offset: normalisation changes every sample."""
    rng = np.random.default_rng(seed)
    return [np.concatenate([0.05 * rng.standard_normal(n // 2), 0.4 * rng.standard_normal(n - n // 2)]) + 0.1
            for n in lengths]


def _prepared(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    train = _utterances(0, [6000, 4400])
    root = write_prepared_speech(tmp_path / "speech", {"asr_train": train, "asr_test": _utterances(1, [5000])})
    return root, train


def test_speech_splits_hold_utterances_normalised_whole_and_padding_keeps_them(tmp_path: Path) -> None:
    root, train = _prepared(tmp_path)
    splits = speech_splits(ModelChoice(2, "tiny"), root)
    assert set(splits) == {"train", "test"}  # asr_real is optional
    batch = SpeechCollate()([splits["train"][0], splits["train"][1]])
    assert batch["waveform"].shape == (2, 6000) and int(batch["padding_mask"][1].sum()) == 1600
    for b, wave in enumerate(train):
        expected = normalize_utterance(stored(wave))
        np.testing.assert_allclose(batch["waveform"][b, : len(wave)].numpy(), expected, rtol=1e-6, atol=1e-6)
    raw = speech_splits(ModelChoice(2, "tiny", overrides={"speech": {"normalize_waveform": False}}), root)
    np.testing.assert_array_equal(raw["train"][0][0], stored(train[0]))


def test_frozen_cnn_cache_sees_the_normalised_utterance(tmp_path: Path) -> None:
    """The CTC stage's cache of frozen CNN features reads the same normalised items as training."""
    root, train = _prepared(tmp_path)
    torch.manual_seed(0)
    encoder = build_model(model_spec("speech", ModelChoice(2, "tiny"))).student_encoder().eval()
    cached = FrozenFeatureSplit(
        speech_splits(ModelChoice(2, "tiny"), root)["train"], with_transcripts(SpeechCollate()), encoder.frozen_features
    )
    for i, wave in enumerate(train):
        normalised = torch.from_numpy(normalize_utterance(stored(wave)))[None]  # (1, S)
        direct = encoder.frozen_features({"waveform": normalised})["conv_features"][0]
        torch.testing.assert_close(cached[i]["conv_features"], direct)
        unnormalised = encoder.frozen_features({"waveform": torch.from_numpy(stored(wave))[None]})["conv_features"][0]
        assert not torch.allclose(cached[i]["conv_features"], unnormalised, atol=1e-3)


def test_task_table_keeps_its_columns_and_adds_the_input_baseline(tmp_path) -> None:
    records = [
        BaselineRecord("average", "score", True, 0.586, 0.572, 0.014, 6000, 3570, 260.0,
                       input_baseline_name="bag of words", input_baseline=0.654, input_baseline_delta=0.586 - 0.654),
        BaselineRecord("old", "score", True, 0.5, 0.4, 0.1, 10, 5, 1.0),  # a record without one
    ]
    path = write_task_table(tmp_path / "text_tasks.csv", records)
    with path.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["task", "metric", "pretrained", "random_init", "delta", "input_baseline", "input_baseline_delta"]
    rows = list(csv.DictReader(path.open(newline="")))
    assert rows[0]["delta"] == "0.014000" and rows[0]["input_baseline"] == "0.654000"
    assert rows[0]["input_baseline_delta"] == "-0.068000"
    assert (rows[1]["input_baseline"], rows[1]["input_baseline_delta"]) == ("", "")
