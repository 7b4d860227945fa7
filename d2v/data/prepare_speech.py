"""Speech prepare: a source -> data/prepared/speech (16 kHz mono int16 shards + manifest + meta).

Layout:
  <split>-<k>.npy   int16 (S,), utterances of one split concatenated (scale by 1/32768 on read)
  manifest.csv      id, split, speaker, n_samples, transcript ('' when unlabelled), shard, offset
  meta.json         sample_rate, dtype, splits {name: {utterances, seconds}}, source, test_speakers;
                    other sources than embedded add extra_test_splits (and LibriSpeech its subsets)

Splits: train / valid (unlabelled pretraining), asr_train / asr_valid / asr_test (labelled; the
embedded test split is a held-out TTS voice), asr_real (embedded only, when the Asterisk English
transcripts exist: real speech; those prompts are then excluded from pretraining). LibriSpeech adds
one test split per further evaluation subset (asr_test_clean, asr_dev_clean, ...).

The stage streams: every source first lists its items (ids, paths, transcripts: no audio is read),
then the items are decoded in order by `workers` processes and written shard by shard
(d2v.data.shards), so peak memory is one shard per split and a killed run resumes from the last
complete shard. Labelled utterances outside 0.5-40 s are left out (the embedded real prompts include
tones and long menus); files that cannot be read are skipped up to MAX_SKIPPED_FRACTION per split.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from d2v.atomic import atomic_write_json
from d2v.audio import SPEECH_SAMPLE_RATE
from d2v.data.config import SpeechConfig
from d2v.data.io import assign_split, first_repeat, write_csv
from d2v.data.shards import RateProgress, ShardWriter, SkipLog, default_workers, fingerprint, parallel_map, resumable_dir, worker_pool
from d2v.data.sources import librispeech as ls
from d2v.data.sources import speech as src
from d2v.data.sources.text import read_wordnet_glosses
from d2v.errors import D2VError

MANIFEST_COLUMNS = ("id", "split", "speaker", "n_samples", "transcript", "shard", "offset")
MIN_SECONDS = 0.5  # shorter chunks carry too little speech to mask spans in
MAX_LABELLED_SECONDS = 40.0  # labelled audio is never chunked (it would split the transcript)
MAX_SKIPPED_FRACTION = 0.01  # unreadable files a split may lose before the stage fails
# Chunks of one source file are numbered job * PIECES_PER_JOB + k for the shard journal, so a shard
# that ends inside a file resumes at the right chunk (a file would need 10^6 chunks to overflow).
PIECES_PER_JOB = 1_000_000


@dataclass(frozen=True)
class AudioJob:
    """One source item to decode, listed before any audio is read. Picklable: workers receive it."""

    key: str  # the utterance id; an unlabelled file's chunks are <key>#<k> when there are several
    split: str
    speaker: str
    source: str  # the file, or the sentence flite speaks
    kind: str  # "g722" | "file" | "flite"
    transcript: str = ""  # '' = unlabelled: cut into chunks of at most `max_seconds`
    voice: str = ""  # flite voice
    max_seconds: float = 0.0


@dataclass
class Decoded:
    pieces: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (id, int16 (S,))
    error: str = ""  # why the item could not be read (it is skipped)


@dataclass
class Listing:
    jobs: list[AudioJob]
    meta: dict[str, Any]  # the source's meta.json keys beyond the common ones


# ------------------------------------------------------------------------------------------ stage


def prepare_speech(cfg: SpeechConfig, seed: int, raw_dir: str | Path, wordnet_dir: str, out_dir: str | Path) -> dict:
    listing = list_jobs(cfg, seed, raw_dir, wordnet_dir)
    check_unique_ids(listing.jobs)
    stage_print = fingerprint(cfg, seed, [(j.key, j.split, j.source) for j in listing.jobs])
    with worker_pool(cfg.workers or default_workers()) as pool, resumable_dir(out_dir, stage_print) as staging:
        rows, stats = write_shards(staging, listing.jobs, cfg.shard_seconds, pool)
        write_csv(staging / "manifest.csv", MANIFEST_COLUMNS, rows)
        meta = {"source": cfg.source, "sample_rate": SPEECH_SAMPLE_RATE, "dtype": "int16", "splits": stats,
                **listing.meta}  # fmt: skip
        atomic_write_json(staging / "meta.json", meta)
    return stats


def list_jobs(cfg: SpeechConfig, seed: int, raw_dir: str | Path, wordnet_dir: str) -> Listing:
    if cfg.source == "embedded":
        return Listing(_embedded(cfg, seed, wordnet_dir), {"test_speakers": [cfg.flite_test_voice]})
    if cfg.source == "librispeech":
        return _librispeech(cfg, seed, Path(raw_dir) / "speech")
    if cfg.source == "audio_dir":
        jobs = list_audio_dir(cfg, seed) + _flite(cfg, seed, wordnet_dir)
        return Listing(jobs, {"test_speakers": [cfg.flite_test_voice], "extra_test_splits": [],
                              "root": cfg.audio_dir.root})  # fmt: skip
    raise D2VError(f"data.speech.source: {cfg.source!r} is not one of embedded, librispeech, audio_dir")


def check_unique_ids(jobs: list[AudioJob]) -> None:
    """Two items with one id would be one row twice in the manifest (and in every id lookup)."""
    repeat = first_repeat((job.key, job.source) for job in jobs)
    if repeat is not None:
        key, first, again = repeat
        raise D2VError(f"duplicate utterance id {key!r}: {first} and {again}")


# ------------------------------------------------------------------------------------------ decode


def decode_job(job: AudioJob) -> Decoded:
    """A job -> its int16 pieces (module level: it runs in the worker processes)."""
    try:
        audio = _read(job)
    except D2VError as exc:
        return Decoded(error=str(exc))
    if job.transcript:
        fits = MIN_SECONDS * SPEECH_SAMPLE_RATE <= len(audio) <= MAX_LABELLED_SECONDS * SPEECH_SAMPLE_RATE
        return Decoded([(job.key, to_pcm(audio))] if fits else [])
    return Decoded([(name, to_pcm(piece)) for name, piece in chunks(job.key, audio, job.max_seconds)])


def _read(job: AudioJob) -> np.ndarray:
    if job.kind == "g722":
        return src.decode_g722(job.source)
    if job.kind == "flite":
        return src.synthesise_flite(job.source, job.voice)
    return src.read_audio(job.source)


def to_pcm(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def chunk_lengths(n_samples: int, max_seconds: float) -> list[int]:
    """The lengths of the chunks `chunks` keeps of `n_samples` samples (the budget counts them unread)."""
    size = int(max_seconds * SPEECH_SAMPLE_RATE)
    lengths = [min(size, n_samples - start) for start in range(0, n_samples, size)]
    return [n for n in lengths if n >= MIN_SECONDS * SPEECH_SAMPLE_RATE]


def chunks(utt_id: str, audio: np.ndarray, max_seconds: float) -> list[tuple[str, np.ndarray]]:
    size = int(max_seconds * SPEECH_SAMPLE_RATE)
    pieces = [audio[i : i + size] for i in range(0, len(audio), size)]
    named = [(utt_id if len(pieces) == 1 else f"{utt_id}#{k}", p) for k, p in enumerate(pieces)]
    return [(name, p) for name, p in named if len(p) >= MIN_SECONDS * SPEECH_SAMPLE_RATE]


# ------------------------------------------------------------------------------------------ shards


@dataclass
class SplitState:
    """One split's writer and the running statistics journalled with each of its shards."""

    writer: ShardWriter
    samples: int
    utterances: int
    skips: SkipLog

    def stats(self) -> dict[str, Any]:
        return {"samples": self.samples, "utterances": self.utterances, "skips": self.skips.state()}


def write_shards(staging: Path, jobs: list[AudioJob], shard_seconds: float, pool: Any) -> tuple[list, dict]:
    """Decode `jobs` in order (over `pool`, from shards.worker_pool; None = in this process) and write
    each split's shards; -> (manifest rows, meta splits)."""
    splits = {name: _open_split(staging, name, shard_seconds) for name in sorted({j.split for j in jobs})}
    pending = [(index, job) for index, job in enumerate(jobs)
               if (index + 1) * PIECES_PER_JOB > splits[job.split].writer.next_index]  # fmt: skip
    dropped = 0
    progress = RateProgress("speech: decode", len(pending), unit="files")
    for done, ((index, job), decoded) in enumerate(zip(pending, _decode_all(pending, pool)), start=1):
        dropped += _add(splits[job.split], index, job, decoded)
        progress.update(done)
    progress.close()
    if dropped:
        print(f"speech: left out {dropped} labelled utterance(s) outside {MIN_SECONDS}-{MAX_LABELLED_SECONDS} s",
              file=sys.stderr)  # fmt: skip
    rows, stats = [], {}
    for name, state in splits.items():
        state.writer.flush(state.stats(), next_index=len(jobs) * PIECES_PER_JOB)
        state.skips.check()
        _report_skips(state.skips)
        rows += state.writer.rows
        if state.utterances:
            stats[name] = {"utterances": state.utterances, "seconds": round(state.samples / SPEECH_SAMPLE_RATE, 2)}
    return rows, stats


def _open_split(staging: Path, split: str, shard_seconds: float) -> SplitState:
    writer = ShardWriter(staging, split, max_length=int(shard_seconds * SPEECH_SAMPLE_RATE), concatenate=True)
    saved = writer.resumed.stats
    skips = SkipLog(f"speech split {split}", MAX_SKIPPED_FRACTION, saved.get("skips"))
    return SplitState(writer, int(saved.get("samples", 0)), int(saved.get("utterances", 0)), skips)


def _decode_all(pending: list[tuple[int, AudioJob]], pool: Any) -> Iterator[Decoded]:
    # Small chunks: a LibriSpeech job is one utterance (~12 s of audio), a few hundred KB to ship back.
    return parallel_map(decode_job, [job for _, job in pending], pool, chunksize=4)


def _add(state: SplitState, index: int, job: AudioJob, decoded: Decoded) -> int:
    """Append one decoded job to its split; -> 1 when a labelled utterance was left out for its length."""
    first = index * PIECES_PER_JOB
    counted = first < state.writer.next_index  # a killed run's journal already holds this job
    if decoded.error:
        if not counted:
            state.skips.skip(job.key, decoded.error)  # the error names the file
        return 0
    for k, (name, pcm) in enumerate(decoded.pieces):
        if first + k < state.writer.next_index:
            continue  # in a shard a killed run completed
        row = [name, job.split, job.speaker, len(pcm), job.transcript]
        state.writer.add(pcm, row, first + k, state.stats())  # the stats of what precedes this piece
        state.samples += len(pcm)
        state.utterances += 1
        if not counted:  # counted with its first piece: a shard that ends after it journals the count
            state.skips.ok()
            counted = True
    if not counted:
        state.skips.ok()
    return int(bool(job.transcript) and not decoded.pieces)


def _report_skips(skips: SkipLog) -> None:
    if skips.skipped:
        first = skips.skipped[0]
        print(f"{skips.what}: skipped {len(skips.skipped)} unreadable file(s), e.g. {first['item']}: "
              f"{first['reason']}", file=sys.stderr)  # fmt: skip


# ------------------------------------------------------------------------------------------ embedded


def _embedded(cfg: SpeechConfig, seed: int, wordnet_dir: str) -> list[AudioJob]:
    dirs = src.asterisk_language_dirs(cfg.asterisk_dir, cfg.pretrain_languages)
    real: dict[str, str] = {}
    transcripts = Path(cfg.real_transcripts)
    if transcripts.is_file() and "en" in src.asterisk_language_dirs(cfg.asterisk_dir, ("en",)):
        real = src.read_asterisk_transcripts(transcripts)
    en_dir = src.asterisk_language_dirs(cfg.asterisk_dir, ("en",))["en"] if real else None
    jobs = _asterisk_real(en_dir, real) if en_dir else []
    held = {f"en/{key}" for key in real}
    return jobs + _asterisk_unlabelled(cfg, seed, dirs, held) + _flite(cfg, seed, wordnet_dir)


def _asterisk_unlabelled(cfg: SpeechConfig, seed: int, dirs: dict[str, Path], held: set[str]) -> list[AudioJob]:
    """Prompts of every pretraining language, shuffled, up to `pretrain_seconds`, cut into chunks of at
    most `max_seconds`; `held` keys (the labelled real-speech split) are left out. The budget is
    counted from file sizes: G.722 at 64 kbit/s decodes to exactly 2 samples per byte."""
    files = [(f"{lang}/{p.relative_to(d).with_suffix('')}", lang, p) for lang, d in dirs.items()
             for p in sorted(d.rglob("*.g722")) if "silence" not in p.parts]  # fmt: skip
    random.Random(seed).shuffle(files)
    budget = cfg.pretrain_seconds * SPEECH_SAMPLE_RATE or float("inf")
    jobs: list[AudioJob] = []
    empty: list[Path] = []
    for key, lang, path in files:
        if key in held or budget <= 0:
            continue
        size = path.stat().st_size
        if size == 0:  # asterisk-core-sounds-ru ships a 0-byte is.g722: nothing to learn from
            empty.append(path)
            continue
        split = assign_split(key, seed, cfg.valid_fraction)  # chunks of one file share a split
        jobs.append(AudioJob(key, split, f"asterisk-{lang}", str(path), "g722", max_seconds=cfg.max_seconds))
        budget -= sum(chunk_lengths(2 * size, cfg.max_seconds))
    if empty:
        print(f"speech: skipped {len(empty)} empty prompt file(s), e.g. {empty[0]}", file=sys.stderr)
    return jobs


def _asterisk_real(en_dir: Path, transcripts: dict[str, str]) -> list[AudioJob]:
    paths = {key: en_dir / f"{key}.g722" for key in transcripts}
    return [AudioJob(f"en/{key}", "asr_real", "asterisk-en", str(paths[key]), "g722", text)
            for key, text in sorted(transcripts.items()) if paths[key].is_file()]  # fmt: skip


def _flite(cfg: SpeechConfig, seed: int, wordnet_dir: str) -> list[AudioJob]:
    """Each voice speaks its own WordNet example sentences; the test voice's are never seen in train."""
    if cfg.flite_test_voice not in cfg.flite_voices:
        raise D2VError(f"data.speech.flite_test_voice: {cfg.flite_test_voice!r} is not in flite_voices")
    sentences = sorted({s for g in read_wordnet_glosses(wordnet_dir) for s in _examples(g.text)})
    random.Random(seed).shuffle(sentences)
    jobs = []
    for v, voice in enumerate(cfg.flite_voices):
        for k, text in enumerate(sentences[v * cfg.asr_sentences : (v + 1) * cfg.asr_sentences]):
            utt_id = f"flite-{voice}-{k:05d}"
            split = "asr_test" if voice == cfg.flite_test_voice else \
                "asr_" + assign_split(utt_id, seed, cfg.asr_valid_fraction)  # fmt: skip
            jobs.append(AudioJob(utt_id, split, f"flite-{voice}", text, "flite", text, voice))
    return jobs


def _examples(gloss: str) -> list[str]:
    import re

    return [s for s in re.findall(r'"([^"]+)"', gloss) if 4 <= len(s.split()) <= 20]


# ------------------------------------------------------------------------------------------ librispeech


def _librispeech(cfg: SpeechConfig, seed: int, speech_raw: Path) -> Listing:
    """Pretraining subsets (unlabelled, chunked; ids <subset>/<utterance> so a subset can also be
    labelled), asr_train (LibriSpeech subsets or a Libri-light set), then one split per evaluation
    subset. meta.json records which subset each labelled split holds and the extra test splits."""
    source = cfg.librispeech
    jobs = []
    for subset in source.pretrain:
        for utt, speaker, path, _ in _transcripts(speech_raw, subset):
            split = assign_split(utt, seed, cfg.valid_fraction)
            jobs.append(AudioJob(f"{subset}/{utt}", split, speaker, str(path), "file", max_seconds=cfg.max_seconds))
    evaluation = ls.evaluation_splits(source)
    roles = [(name, "asr_train") for name in source.asr_train] + [(sub, split) for split, sub in evaluation.items()]
    for name, split in roles:
        jobs += [AudioJob(utt, split, speaker, str(path), "file", text)
                 for utt, speaker, path, text in _transcripts(speech_raw, name)]  # fmt: skip
    extra = [split for split in evaluation if split not in ("asr_valid", "asr_test")]
    subsets = {"asr_train": list(source.asr_train), **evaluation}
    return Listing(jobs, {"test_speakers": [], "extra_test_splits": extra, "subsets": subsets})


def _transcripts(speech_raw: Path, name: str) -> list[tuple[str, str, Path, str]]:
    return [row for folder in ls.subset_folders(speech_raw, name) for row in src.read_librispeech_transcripts(folder)]


# ------------------------------------------------------------------------------------------ audio dir


def list_audio_dir(cfg: SpeechConfig, seed: int) -> list[AudioJob]:
    """Every audio file under `audio_dir.root` (sorted) as unlabelled pretraining speech; the id is the
    path below the root without its extension, the speaker its top-level folder (or 'audio_dir')."""
    root = Path(cfg.audio_dir.root)
    if not root.is_dir():
        raise D2VError(f"data.speech.audio_dir.root: {root} is not a directory")
    suffixes = {f".{e.lower().lstrip('.')}" for e in cfg.audio_dir.extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise D2VError(f"{root}: no audio files with extensions {sorted(suffixes)}")
    jobs = []
    for path in files:
        rel = path.relative_to(root)
        key = rel.with_suffix("").as_posix()
        speaker = rel.parts[0] if len(rel.parts) > 1 else "audio_dir"
        jobs.append(AudioJob(key, assign_split(key, seed, cfg.valid_fraction), speaker, str(path), "file",
                             max_seconds=cfg.max_seconds))  # fmt: skip
    return jobs
