"""What a profile's pretraining costs: counted model FLOPs, and GPU-hours under a stated utilisation.

The FLOPs are counted, not guessed: torch's FlopCounterMode over one forward and backward pass of the
profile's own model on one synthetic sample of the profile's shape (an image at its size, a speech
crop of `crop_seconds`, a text block of `max_positions` tokens), on CPU, then scaled by the samples
of the run. Everything that runs per sample is in it: data2vec 2.0's M student clones, the teacher
pass, the decoder. The optimizer and EMA updates are left out (per parameter, not per sample: well
under 1 % at these batch sizes). The hours are an estimate at an assumed model-FLOPs utilisation;
`benchmarks/gpu_check.sh` measures the real one on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from d2v.audio import SPEECH_SAMPLE_RATE
from d2v.config import Params
from d2v.models import DataShape, build_model, model_spec

# NVIDIA H100 SXM, dense bf16 (the spec sheet's 1979 TFLOP/s is with 2:4 sparsity).
H100_BF16_DENSE_TFLOPS = 989.0
DEFAULT_MFU = 0.4


@dataclass(frozen=True)
class Cost:
    flop_per_sample: float
    samples_per_update: int
    updates: int
    gpus: int

    @property
    def total_flop(self) -> float:
        return self.flop_per_sample * self.samples_per_update * self.updates

    def gpu_hours(self, mfu: float = DEFAULT_MFU, peak_tflops: float = H100_BF16_DENSE_TFLOPS) -> float:
        return self.total_flop / (mfu * peak_tflops * 1e12) / 3600

    def wall_hours(self, mfu: float = DEFAULT_MFU, peak_tflops: float = H100_BF16_DENSE_TFLOPS) -> float:
        return self.gpu_hours(mfu, peak_tflops) / self.gpus


def pretraining_cost(params: Params, modality: str, gpus: int) -> Cost:
    """Counted FLOPs of `params`' pretraining of `modality` on `gpus` processes."""
    choice = getattr(params.model, modality)
    data = params.data
    shape = {
        "image": DataShape(image_size=data.image.image_size, channels=data.image.channels),
        "text": DataShape(vocab_size=data.text.vocab_size),
        "speech": DataShape(),
    }[modality]
    recipe = getattr(params.pretrain, modality)
    torch.manual_seed(0)
    model = build_model(model_spec(modality, choice, shape))
    sample = _sample(modality, model.spec, params)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(sample, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
    return Cost(
        flop_per_sample=float(counter.get_total_flops()),
        samples_per_update=recipe.batch_size * recipe.grad_accum * gpus,
        updates=recipe.max_steps,
        gpus=gpus,
    )


def _sample(modality: str, spec: object, params: Params) -> dict[str, torch.Tensor]:
    if modality == "image":
        size, channels = params.data.image.image_size, params.data.image.channels
        return {"image": torch.randn(1, channels, size, size)}
    if modality == "speech":
        return {"waveform": torch.randn(1, params.pretrain.speech.crop_samples(SPEECH_SAMPLE_RATE))}
    positions = spec.text.max_positions  # type: ignore[attr-defined]
    return {"tokens": torch.randint(5, params.data.text.vocab_size, (1, positions))}
