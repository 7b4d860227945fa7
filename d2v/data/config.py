"""The `data` section of params.yaml: one source switch per modality plus its knobs.

Sizes here are the embedded default's demo sizes; the real sources (ImageNet, GLUE, LibriSpeech)
use the same fields where they apply (split fractions, caps) and their own sub-section for roots,
URLs and checksums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


ILSVRC2012_MD5 = {
    "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
    "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
    "ILSVRC2012_devkit_t12.tar.gz": "fa75699e90414af021442c21a62c3abf",
}  # the official archives' md5 (as image-net.org publishes them)


@dataclass(frozen=True)
class ImageNetSource:
    root: str  # train/ + val/ folders, the Kaggle layout, or the three ILSVRC2012 archives (s3:// is a TODO)
    max_per_class: int  # cap per class and split; 0 = everything
    train_size: int = 0  # images of the official train split kept for train; 0 = all
    valid_size: int = 10000  # held out of the official train split
    test_size: int = 0  # images of the official val split (our test); 0 = all
    md5: dict[str, str] = field(default_factory=lambda: dict(ILSVRC2012_MD5))  # archive -> md5


@dataclass(frozen=True)
class FolderSource:
    root: str  # your ImageFolder: train/<class>/* and optionally val/<class>/* (becomes test)
    valid_fraction: float = 0.1  # of train/, held out (seeded, by file path)
    test_fraction: float = 0.2  # of train/, held out as test when there is no val/


@dataclass(frozen=True)
class ImageConfig:
    source: Literal["embedded", "imagenet", "folder"]
    fashion_mnist_dir: str  # Debian dataset-fashion-mnist IDX files
    image_size: int  # square side in pixels after resize (Fashion-MNIST is 28 natively)
    channels: Literal[1, 3]
    train_size: int  # images kept from the official train split for train (pretraining + probes)
    valid_size: int  # images held out from the official train split
    test_size: int  # images kept from the official test split (0 = all)
    shard_size: int  # images per .npy shard
    imagenet: ImageNetSource
    folder: FolderSource = FolderSource(root="")
    workers: int = 0  # decode processes for file sources; 0 = one per core, 1 = in this process
    max_skipped_fraction: float = 0.001  # unreadable images allowed per split before the stage fails


@dataclass(frozen=True)
class GlueSource:
    base_url: str  # <base_url>/<archive>: the official GLUE task archives (CoLA.zip, QQP-clean.zip, ...)
    tasks: tuple[str, ...]
    sha256: dict[str, str] = field(default_factory=dict)  # downloaded file name -> sha256 (every file pinned)
    valid_fraction: float = 0.1  # held out of GLUE train; GLUE dev becomes our test split
    senteval_url: str = "https://dl.fbaipublicfiles.com/senteval/senteval_data"  # MRPC's msr_paraphrase_*.txt
    max_skipped_fraction: float = 0.001  # malformed rows (too few columns) allowed per file


@dataclass(frozen=True)
class TextCorpus:
    """The pretraining corpus (and tokenizer input), whatever the downstream task source."""

    source: Literal["embedded", "dir"] = "embedded"  # dir: your *.txt / *.jsonl files under `dir`
    dir: str = ""
    jsonl_field: str = "text"  # the field holding a document's text in *.jsonl files
    # Shuffled copies of the downstream tasks' unlabelled train texts appended to the pretraining
    # stream (task-adaptive pretraining); 0 = the corpus alone.
    task_text_copies: int = 0


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
    corpus: TextCorpus = TextCorpus()


@dataclass(frozen=True)
class LibriSpeechSource:
    base_url: str  # <base_url>/<subset>.tar.gz (openslr resource 12 layout)
    pretrain: tuple[str, ...]
    # LibriSpeech subsets, or one Libri-light fine-tuning set: librilight-10min | librilight-1h | librilight-10h
    asr_train: tuple[str, ...]
    asr_valid: tuple[str, ...]  # first -> asr_valid (model selection); others -> extra test splits
    asr_test: tuple[str, ...]  # first -> asr_test; each other -> its own test split asr_<subset>
    md5: dict[str, str]  # subset -> archive md5 as openslr publishes it; '' = record the first download's
    librilight_url: str  # librispeech_finetuning.tgz
    librilight_sha256: str


@dataclass(frozen=True)
class AudioDirSource:
    root: str  # every file under it with one of `extensions` is unlabelled pretraining speech
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class SpeechConfig:
    source: Literal["embedded", "librispeech", "audio_dir"]
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
    workers: int  # decode processes: 0 = one per core, 1 = in this process
    librispeech: LibriSpeechSource
    audio_dir: AudioDirSource


@dataclass(frozen=True)
class DataConfig:
    raw_dir: str  # downloads and source records (DVC outs of the download stages)
    interim_dir: str
    prepared_dir: str  # data/prepared/<modality>: what training and evaluation read
    reports_dir: str  # reports/validation/<modality>.json
    image: ImageConfig
    text: TextConfig
    speech: SpeechConfig
