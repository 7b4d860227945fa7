"""The data2vec papers' headline numbers, with the scale they were obtained at.

They are printed BESIDE this run's numbers, never as a target the tiny profile should meet: the
paper's models are 10-1000x larger, pretrained for days on 16 GPUs on the full benchmarks.
Sources: data2vec 1.0 (arXiv:2202.03555) Tables 1, 2 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperNumber:
    modality: str
    benchmark: str  # what was measured, and how
    scale: str  # model, pretraining data and budget
    metric: str
    values: tuple[tuple[str, float], ...]  # (setting, value as the paper prints it, in percent)
    our_task: str  # the task of ours that plays the same role (metrics/eval/<modality>.json)


_VIT_B = "ViT-B/16 (86M parameters), pretrained 800 epochs on ImageNet-1K (1.28M images), 16 GPUs"
_SPEECH_BASE = "data2vec Base (95M parameters), pretrained on LibriSpeech 960 h, 16 GPUs"
_TEXT_BASE = "data2vec Base (RoBERTa-size, 125M parameters), pretrained on Books + Wikipedia, 16 GPUs"

PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    PaperNumber("image", "ImageNet-1K top-1, full fine-tuning (data2vec 1.0, Table 1)", _VIT_B, "top-1 %",
                (("ViT-B/16", 84.2),), "linear_probe"),
    PaperNumber("speech", "LibriSpeech test-other WER by labelled fine-tuning data, 4-gram LM (data2vec 1.0, Table 2)",
                _SPEECH_BASE, "WER %", (("10 min", 12.3), ("1 h", 9.1), ("10 h", 8.1), ("100 h", 6.8)), "ctc"),
    PaperNumber("text", "GLUE dev average of 8 tasks, mean of 5 runs (data2vec 1.0, Table 4)", _TEXT_BASE,
                "score %", (("Base", 82.7),), "average"),
)

# What our numbers are, in the same words, so the two columns cannot be confused: (modality, data source).
_OUR_DATA = {
    ("image", "embedded"): "Fashion-MNIST 28x28 greyscale, linear probe on frozen features",
    ("image", "imagenet"): "ImageNet-1K subset as configured, linear probe on frozen features",
    ("speech", "embedded"): "CTC letters on flite TTS speech (held-out voice), greedy decoding, no LM",
    ("speech", "librispeech"): "CTC letters on LibriSpeech as configured, greedy decoding, no LM",
    ("text", "embedded"): "GLUE-style average of the embedded tasks (SST-2-like, MRPC-like, supersense)",
    ("text", "glue"): "GLUE-style average of the configured GLUE tasks (dev split, one run)",
}


def our_data(modality: str, source: str) -> str:
    return _OUR_DATA.get((modality, source), f"{modality} data from source {source!r}")
