"""The speech front end: gradient scaling into the CNN and the precomputed-features path."""

from __future__ import annotations

import pytest
import torch

from d2v.config import ModelChoice
from d2v.errors import D2VError
from d2v.models import build_model, model_spec


def student(feature_grad_mult: float = 1.0):
    torch.manual_seed(0)
    choice = ModelChoice(2, "tiny", overrides={"speech": {"feature_grad_mult": feature_grad_mult}})
    return build_model(model_spec("speech", choice)).student_encoder()


def padded_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([[8000], [5600]])
    return {"waveform": torch.randn(2, 8000, generator=g), "padding_mask": torch.arange(8000)[None] >= lengths}


def cnn_gradients(feature_grad_mult: float) -> list[torch.Tensor | None]:
    encoder = student(feature_grad_mult)
    encoder(padded_batch()).x.pow(2).mean().backward()
    return [p.grad for p in encoder.feature_extractor.parameters()]


def test_feature_grad_mult_scales_the_cnn_gradient_and_zero_skips_it() -> None:
    full, scaled, frozen = cnn_gradients(1.0), cnn_gradients(0.1), cnn_gradients(0.0)
    assert all(g is not None and g.abs().sum() > 0 for g in full)
    for a, b in zip(full, scaled):
        torch.testing.assert_close(b, 0.1 * a)
    assert all(g is None for g in frozen)


def test_negative_feature_grad_mult_is_rejected() -> None:
    with pytest.raises(D2VError, match="feature_grad_mult must be >= 0, got -1"):
        student(-1.0)(padded_batch())


def test_precomputed_conv_features_give_the_same_encoder_output() -> None:
    encoder = student().eval()
    batch = padded_batch()
    frozen = encoder.frozen_features(batch)
    assert frozen is not None and set(frozen) == {"conv_features", "frame_padding_mask"}
    assert not frozen["conv_features"].requires_grad
    direct, cached = encoder(batch), encoder(frozen)
    torch.testing.assert_close(cached.x, direct.x)
    assert torch.equal(cached.padding_mask, direct.padding_mask)


def test_other_modalities_have_no_precomputed_features() -> None:
    torch.manual_seed(0)
    text = build_model(model_spec("text", ModelChoice(2, "tiny"), vocab_size=64)).student_encoder()
    assert text.frozen_features({"tokens": torch.ones(1, 4, dtype=torch.long)}) is None
