"""The data2vec papers' headline numbers, with the scale they were obtained at.

They are printed BESIDE this run's numbers, never as a target the tiny profile should meet: the
paper's models are 10-1000x larger, pretrained for days on 16 GPUs on the full benchmarks.
Sources: data2vec 1.0 (arXiv:2202.03555) Tables 1, 2 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass

from d2v.data.config import DataConfig
from d2v.data.sources.librispeech import extra_split_name


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
    ("speech", "librispeech"): "CTC letters on LibriSpeech {subset} (the subset beside the paper's), greedy decoding, no LM",
    ("speech", "audio_dir"): "CTC letters on flite TTS speech (held-out voice), greedy decoding, no LM; pretrained on your audio",
    ("text", "embedded"): "GLUE-style average of the embedded tasks (SST-2-like, MRPC-like, supersense)",
    ("text", "glue"): "GLUE-style average of the configured GLUE tasks (dev split, one run)",
}


def our_data(modality: str, source: str, subset: str = "") -> str:
    return _OUR_DATA.get((modality, source), f"{modality} data from source {source!r}").replace("{subset}", subset)


PAPER_SPEECH_SUBSET = "test-other"  # Table 2's column: the number ours must be measured on to compare


def our_comparison(ref: PaperNumber, data: DataConfig) -> tuple[str, str]:
    """(our task, what it measures) to set beside `ref`. On LibriSpeech the paper's test-other WER sits
    beside our test-other WER: asr_test when test-other is the main test subset, else its own split
    (asr_test_other); without test-other prepared, the words name the subset the number comes from."""
    source = getattr(data, ref.modality).source
    if ref.modality != "speech" or source != "librispeech":
        return ref.our_task, our_data(ref.modality, source)
    main = data.speech.librispeech.asr_test[0]
    extra = (*data.speech.librispeech.asr_valid[1:], *data.speech.librispeech.asr_test[1:])
    if main != PAPER_SPEECH_SUBSET and PAPER_SPEECH_SUBSET in extra:
        return f"ctc_{extra_split_name(PAPER_SPEECH_SUBSET)}_wer", our_data("speech", source, PAPER_SPEECH_SUBSET)
    words = our_data("speech", source, main)
    if main != PAPER_SPEECH_SUBSET:
        words += "; test-other is not prepared, so this is NOT the paper's test set"
    return ref.our_task, words
