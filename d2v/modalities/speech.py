"""Speech: the wav2vec 2.0 convolutional feature encoder (16 kHz -> 50 Hz) or, as an option, log-mel
energies on the same frame grid, and a convolutional positional encoder. Padding masks are carried
through the front end by output-length arithmetic.

Waveforms arrive already normalised when `SpeechFrontSpec.normalize_waveform` is set: the data
pipeline normalises each whole utterance before it is cropped, packed or padded
(d2v.data.datasets.normalize_utterance), as the released recipe does. Normalising here instead
would normalise each crop, which changes what a crop of a quiet or loud stretch looks like."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from d2v.core.spec import SpeechFrontSpec
from d2v.core.types import Batch
from d2v.errors import D2VError
from d2v.modalities.base import Features, Frontend


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of a (B, C, T) tensor (wav2vec 2.0's `extractor_mode: layer_norm`)."""

    def __init__(self, channels: int, affine: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, elementwise_affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ConvFeatureEncoder(nn.Module):
    def __init__(self, layers: tuple[tuple[int, int, int], ...]) -> None:
        super().__init__()
        self.layers = layers
        blocks: list[nn.Module] = []
        in_ch = 1
        for channels, kernel, stride in layers:
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(in_ch, channels, kernel, stride=stride, bias=False),
                    _ChannelNorm(channels),
                    nn.GELU(),
                )
            )
            in_ch = channels
        self.blocks = nn.Sequential(*blocks)
        for block in self.blocks:
            nn.init.kaiming_normal_(block[0].weight)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for _, kernel, stride in self.layers:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths

    def forward(self, waveform: Tensor) -> Tensor:  # (B, S) -> (B, C, T)
        return self.blocks(waveform.unsqueeze(1))


class LogMelFeatureEncoder(nn.Module):
    """Log-mel filterbank energies on the conv stack's frame grid: one frame per `ConvFeatureEncoder`
    output frame (window = its receptive field, hop = its total stride, no centring), one band per
    output channel. No trainable parameters."""

    def __init__(self, layers: tuple[tuple[int, int, int], ...], sample_rate: int = 16_000) -> None:
        super().__init__()
        import torchaudio  # only this front end needs it

        self.window, self.hop = _receptive_field(layers), math.prod(stride for _, _, stride in layers)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=self.window, win_length=self.window, hop_length=self.hop, n_mels=layers[-1][0],
            center=False,
        )

    def output_lengths(self, lengths: Tensor) -> Tensor:
        # For the wav2vec 2.0 stack this equals the CNN's frame count at every length (tested).
        return torch.div(lengths - self.window, self.hop, rounding_mode="floor") + 1

    def forward(self, waveform: Tensor) -> Tensor:  # (B, S) -> (B, C, T)
        return torch.log(self.mel(waveform) + 1e-5)


class SpeechFrontend(Frontend):
    def __init__(self, spec: SpeechFrontSpec, dim: int, learned_mask: bool) -> None:
        super().__init__(dim, learned_mask)
        self.spec = spec
        channels = spec.conv_layers[-1][0]
        if spec.feature_extractor not in ("cnn", "log_mel"):
            raise D2VError(f"speech.feature_extractor must be 'cnn' or 'log_mel', got {spec.feature_extractor!r}")
        self.local_encoder: nn.Module = (
            ConvFeatureEncoder(spec.conv_layers)
            if spec.feature_extractor == "cnn"
            else LogMelFeatureEncoder(spec.conv_layers)
        )
        self.feature_norm = nn.LayerNorm(channels)
        self.project = nn.Linear(channels, dim)
        # No dropout here: the encoder's input dropout (after its input LayerNorm) is the released
        # recipe's only one, and the teacher, which reads these features, must see them undropped.
        if spec.feature_grad_mult < 0:
            raise D2VError(f"speech.feature_grad_mult must be >= 0, got {spec.feature_grad_mult}")
        kernel = spec.conv_pos_kernel
        if kernel % 2 == 0:
            raise D2VError(f"speech.conv_pos_kernel must be odd, got {kernel}")
        self.pos_conv = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=spec.conv_pos_groups),
                    _ChannelNorm(dim, affine=False),
                    nn.GELU(),
                )
                for _ in range(spec.conv_pos_depth)
            ]
        )

    @property
    def receptive_field(self) -> int:
        return _receptive_field(self.spec.conv_layers)

    @torch.no_grad()
    def frozen_conv_features(self, batch: Batch) -> Batch:
        """The CNN's output for a waveform batch, as a batch that `local_features` accepts in place of
        the waveform: "conv_features" (B, T, C) and "frame_padding_mask" (B, T). With the feature
        encoder frozen (CTC fine-tuning) it is computed once per utterance instead of every update."""
        wave, sample_padding = self._prepared_waveform(batch)
        feats = self._conv_features(wave)  # (B, T, C)
        out: Batch = {"conv_features": feats}
        if sample_padding is not None:
            out["frame_padding_mask"] = self._frame_padding(sample_padding, feats.shape[1])
        return out

    def local_features(self, batch: Batch) -> Features:
        if "conv_features" in batch:  # precomputed by frozen_conv_features
            feats, padding = batch["conv_features"], batch.get("frame_padding_mask")
        else:
            wave, sample_padding = self._prepared_waveform(batch)
            feats = self._conv_features(wave)  # (B, T, C)
            padding = None if sample_padding is None else self._frame_padding(sample_padding, feats.shape[1])
        x = self.project(self.feature_norm(feats))  # (B, T, D)
        if padding is not None:
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        return Features(x, padding)

    def _frame_padding(self, sample_padding: Tensor, frames: int) -> Tensor:
        lengths = self.local_encoder.output_lengths((~sample_padding).sum(dim=1))
        return torch.arange(frames, device=sample_padding.device)[None, :] >= lengths[:, None]  # (B, T)

    def _prepared_waveform(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        wave = batch["waveform"]
        if wave.ndim != 2:
            raise D2VError(f"speech batch 'waveform' must be (B, samples), got {tuple(wave.shape)}")
        if wave.shape[1] < self.receptive_field:
            raise D2VError(
                f"waveform of {wave.shape[1]} samples is shorter than the feature encoder's "
                f"receptive field ({self.receptive_field} samples)"
            )
        sample_padding = batch.get("padding_mask")
        if sample_padding is not None:
            wave = wave.masked_fill(sample_padding, 0.0)
        return wave, sample_padding

    def _conv_features(self, wave: Tensor) -> Tensor:
        mult = self.spec.feature_grad_mult
        if mult == 0.0:
            with torch.no_grad():
                return self.local_encoder(wave).transpose(1, 2)
        feats = self.local_encoder(wave).transpose(1, 2)
        return feats if mult == 1.0 else _GradScale.apply(feats, mult)

    def add_positions(self, features: Features) -> Tensor:
        x = features.x
        if features.padding_mask is not None:
            x = x.masked_fill(features.padding_mask.unsqueeze(-1), 0.0)
        return x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)


def _receptive_field(layers: tuple[tuple[int, int, int], ...]) -> int:
    """Input samples behind one output frame of a conv stack."""
    field, jump = 1, 1
    for _, kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


class _GradScale(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None
