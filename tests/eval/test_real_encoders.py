"""The procedures on the real tiny data2vec students (contract check; a few updates each)."""

from __future__ import annotations

import pytest
import torch

from d2v.config import ModelChoice
from d2v.data.datasets import SpeechCollate
from d2v.eval.config import FinetuneConfig, LinearProbeConfig, SpeechEvalConfig
from d2v.eval.ctc import ctc_finetune
from d2v.eval.finetune import encoder_layer_ids, finetune
from d2v.eval.linear_probe import linear_probe
from d2v.models import DataShape, build_model, model_spec

from eval_standins import DictDataset

FT = FinetuneConfig(
    epochs=1, lr=1e-3, batch_size=8, weight_decay=0.05, layer_decay=0.65, label_smoothing=0.1,
    warmup_fraction=0.0, n_train=None,
)


def student(modality: str, data: DataShape | None = None):
    torch.manual_seed(0)
    return build_model(model_spec(modality, ModelChoice(2, "tiny"), data)).student_encoder()


def test_image_student_probe_and_finetune() -> None:
    encoder = student("image")
    labels = torch.arange(16) % 4
    data = DictDataset(image=torch.randn(16, 1, 28, 28), label=labels)
    splits = {"train": data, "test": data}
    probe = linear_probe(encoder, splits, LinearProbeConfig(5, 0.01, 0, (0.0,), None, None), pooling="cls", n_test=None, seed=0)
    tuned = finetune(encoder, splits, FT, pooling="mean", n_test=None, seed=0)
    assert 0 <= probe.metrics["top1"] <= 1 and len(tuned.train_losses) == 2
    ids = encoder_layer_ids(encoder, {"image": torch.zeros(1, 1, 28, 28)})
    by_name = {name: ids[name] for name, _ in encoder.named_parameters()}
    assert sorted(set(by_name.values()))[:5] == [0, 1, 2, 3, 4]
    assert all(v == 0 for n, v in by_name.items() if "local_encoder" in n)


def test_text_student_regression() -> None:
    encoder = student("text", DataShape(vocab_size=64))
    tokens = torch.randint(5, 64, (16, 12))
    data = DictDataset(tokens=tokens, padding_mask=torch.zeros(16, 12, dtype=torch.bool), label=torch.rand(16))
    result = finetune(encoder, {"train": data, "test": data}, FT, pooling="mean", n_test=None, seed=0)
    assert set(result.metrics) == {"pearson", "spearman"}


def test_speech_student_ctc_with_data_reader_collate() -> None:
    encoder = student("speech")
    items = [(torch.randn(4000 + 800 * i).numpy() * 0.1, "a cab", "slt") for i in range(4)]
    cfg = SpeechEvalConfig(
        steps=2, lr=1e-4, batch_size=2, weight_decay=0.0, freeze_feature_encoder=True, freeze_encoder_steps=1,
        tri_stage=(0.1, 0.4, 0.5), init_lr_scale=0.01, final_lr_scale=0.05, n_train=None, n_test=None, seed=0,
    )
    result = ctc_finetune(encoder, {"train": items, "test": items}, cfg, collate=SpeechCollate())
    assert len(result.train_losses) == 2 and result.references == ["a cab"] * 4
    assert result.metrics["wer"] >= 0


def test_speech_ctc_with_cached_frozen_features_matches_running_the_cnn(monkeypatch) -> None:
    """With the CNN frozen, its output is computed once per utterance; training must not change."""
    import d2v.eval.ctc as ctc

    items = [(torch.randn(4000 + 800 * i).numpy() * 0.1, "a cab", "slt") for i in range(4)]
    cfg = SpeechEvalConfig(
        steps=3, lr=1e-3, batch_size=2, weight_decay=0.0, freeze_feature_encoder=True, freeze_encoder_steps=0,
        tri_stage=(0.1, 0.4, 0.5), init_lr_scale=0.01, final_lr_scale=0.05, n_train=None, n_test=None, seed=0,
    )
    splits = {"train": items, "test": items, "real": items[:2]}
    cached = ctc_finetune(student("speech"), splits, cfg, collate=SpeechCollate(), extra_test_splits=("real",))
    monkeypatch.setattr(ctc, "_frozen_feature_splits", lambda *args: None)
    direct = ctc_finetune(student("speech"), splits, cfg, collate=SpeechCollate(), extra_test_splits=("real",))
    assert cached.train_losses == pytest.approx(direct.train_losses, rel=1e-4)
    assert cached.predictions == direct.predictions and set(cached.metrics) == set(direct.metrics)
    assert cached.extra_test_sizes == direct.extra_test_sizes == {"real": 2}
