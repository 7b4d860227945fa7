"""The `data` section of params.yaml: one source switch per modality plus its knobs.

Sizes here are the embedded default's demo sizes; the real sources (ImageNet, GLUE, LibriSpeech)
use the same fields where they apply (split fractions, caps) and their own sub-section for roots,
URLs and checksums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ImageNetSource:
    root: str  # local ImageFolder with train/<class>/* and val/<class>/* (s3:// is a TODO)
    max_per_class: int  # cap per class and split; 0 = everything


@dataclass(frozen=True)
class ImageConfig:
    source: Literal["embedded", "imagenet"]
    fashion_mnist_dir: str  # Debian dataset-fashion-mnist IDX files
    image_size: int  # square side in pixels after resize (Fashion-MNIST is 28 natively)
    channels: Literal[1, 3]
    train_size: int  # images kept from the official train split for train (pretraining + probes)
    valid_size: int  # images held out from the official train split
    test_size: int  # images kept from the official test split (0 = all)
    shard_size: int  # images per .npy shard
    imagenet: ImageNetSource


@dataclass(frozen=True)
class GlueSource:
    base_url: str  # <base_url>/<TASK>.zip, the layout of the official GLUE task archives
    tasks: tuple[str, ...]
    sha256: dict[str, str] = field(default_factory=dict)  # task -> archive sha256 ('' = record it)
    valid_fraction: float = 0.1  # held out of GLUE train; GLUE dev becomes our test split


@dataclass(frozen=True)
class TextConfig:
    source: Literal["embedded", "glue"]
    wordnet_dir: str
    fortunes_dir: str
    corpus_max_lines: int  # pretraining corpus lines kept after shuffling (0 = all)
    corpus_valid_fraction: float  # corpus lines held out as the pretraining valid stream
    vader_version: str  # vaderSentiment sdist holding the gold movie snippets
    vader_sha256: str
    task_size: int  # examples per downstream task (before the split); 0 = all
    valid_fraction: float
    test_fraction: float
    paraphrase_negative_window: int  # negatives pair a verse with one at most this many verses away
    vocab_size: int
    tokenizer_sentences: int  # corpus lines sampled for sentencepiece training
    glue: GlueSource


@dataclass(frozen=True)
class LibriSpeechSource:
    base_url: str  # <base_url>/<subset>.tar.gz (openslr resource 12 layout)
    pretrain: tuple[str, ...]
    asr_train: tuple[str, ...]
    asr_valid: tuple[str, ...]
    asr_test: tuple[str, ...]
    md5: dict[str, str] = field(default_factory=dict)  # subset -> archive md5 (openslr publishes md5)


@dataclass(frozen=True)
class SpeechConfig:
    source: Literal["embedded", "librispeech"]
    asterisk_dir: str
    pretrain_languages: tuple[str, ...]  # Asterisk prompt sets used for unlabelled pretraining
    pretrain_seconds: float  # cap on pretraining audio (0 = all)
    max_seconds: float  # longer utterances are cut into chunks of at most this length
    valid_fraction: float  # of the pretraining utterances
    flite_voices: tuple[str, ...]
    flite_test_voice: str  # held out: the ASR test split is this voice only
    asr_sentences: int  # sentences synthesised per voice
    asr_valid_fraction: float
    real_transcripts: str  # Asterisk English transcripts; when the file exists -> split asr_real
    shard_seconds: float  # audio per int16 shard
    librispeech: LibriSpeechSource


@dataclass(frozen=True)
class DataConfig:
    raw_dir: str  # downloads and source records (DVC outs of the download stages)
    interim_dir: str
    prepared_dir: str  # data/prepared/<modality>: what training and evaluation read
    reports_dir: str  # reports/validation/<modality>.json
    image: ImageConfig
    text: TextConfig
    speech: SpeechConfig
