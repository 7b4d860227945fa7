"""The speech front end: gradient scaling into the CNN, the precomputed-features path, the log-mel option."""

from __future__ import annotations

import pytest
import torch

from d2v.config import ModelChoice
from d2v.errors import ConfigError, D2VError
from d2v.models import DataShape, build_model, model_spec


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
    text = build_model(model_spec("text", ModelChoice(2, "tiny"), DataShape(vocab_size=64))).student_encoder()
    assert text.frozen_features({"tokens": torch.ones(1, 4, dtype=torch.long)}) is None


def log_mel_student():
    torch.manual_seed(0)
    choice = ModelChoice(2, "tiny", overrides={"speech": {"feature_extractor": "log_mel"}})
    return build_model(model_spec("speech", choice)).student_encoder()


def test_log_mel_frames_match_the_cnn_grid_at_every_length() -> None:
    from d2v.modalities.speech import ConvFeatureEncoder, LogMelFeatureEncoder

    layers = model_spec("speech", ModelChoice(2, "tiny")).speech.conv_layers  # type: ignore[union-attr]
    cnn, mel = ConvFeatureEncoder(layers), LogMelFeatureEncoder(layers)
    lengths = torch.arange(400, 6000)
    assert torch.equal(mel.output_lengths(lengths), cnn.output_lengths(lengths))
    for samples in (400, 719, 720, 3333):
        frames = mel(torch.randn(1, samples)).shape
        assert frames == (1, layers[-1][0], int(cnn.output_lengths(torch.tensor(samples))))
    assert (mel.window, mel.hop) == (400, 320)  # 25 ms windows every 20 ms at 16 kHz


def test_log_mel_front_end_has_nothing_to_train_and_measures_the_spectrum() -> None:
    encoder = log_mel_student()
    assert not list(encoder.feature_extractor.parameters())
    t = torch.arange(16000) / 16000
    low, high = torch.sin(2 * torch.pi * 300 * t)[None], torch.sin(2 * torch.pi * 3000 * t)[None]
    mel = encoder.feature_extractor
    peak_low, peak_high = mel(low).mean(-1).argmax(), mel(high).mean(-1).argmax()
    assert peak_low < peak_high  # a higher tone peaks in a higher band


def test_log_mel_student_handles_padding_and_cached_features() -> None:
    encoder = log_mel_student().eval()
    batch = padded_batch()
    out = encoder(batch)
    assert out.padding_mask is not None and int((~out.padding_mask[1]).sum()) == (5600 - 400) // 320 + 1
    torch.testing.assert_close(encoder(encoder.frozen_features(batch)).x, out.x)  # type: ignore[arg-type]


def test_unknown_feature_extractor_is_rejected() -> None:
    choice = ModelChoice(2, "tiny", overrides={"speech": {"feature_extractor": "mfcc"}})
    with pytest.raises(ConfigError, match=r"speech.feature_extractor: expected one of \['cnn', 'log_mel'\], got str 'mfcc'"):
        model_spec("speech", choice)


def test_front_end_takes_waveforms_as_given() -> None:
    """Normalisation is the data pipeline's (per utterance, before cropping); the front end must not
    normalise again, or crops would be normalised one by one."""
    encoder = student().eval()
    wave = 0.2 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2)) + 0.3  # (1, S), mean 0.3
    normalised = (wave - wave.mean()) / wave.std(unbiased=False)
    raw_features = encoder.frozen_features({"waveform": wave})["conv_features"]
    normalised_features = encoder.frozen_features({"waveform": normalised})["conv_features"]
    assert not torch.allclose(raw_features, normalised_features, atol=1e-3)
