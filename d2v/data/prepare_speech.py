"""Speech prepare: a source -> data/prepared/speech (16 kHz mono int16 shards + manifest + meta).

Layout:
  <split>-<k>.npy   int16 (S,), utterances of one split concatenated (scale by 1/32768 on read)
  manifest.csv      id, split, speaker, n_samples, transcript ('' when unlabelled), shard, offset
  meta.json         sample_rate, dtype, splits {name: {utterances, seconds}}, source, test_speakers

Splits: train / valid (unlabelled pretraining), asr_train / asr_valid / asr_test (labelled; the
embedded test split is a held-out TTS voice), asr_real (embedded only, when the Asterisk English
transcripts exist: real speech; those prompts are then excluded from pretraining).
"""

from __future__ import annotations

import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from d2v.core.types import SPEECH_SAMPLE_RATE
from d2v.data.config import SpeechConfig
from d2v.atomic import atomic_dir, atomic_write_json
from d2v.data.io import assign_split, write_csv, write_npy
from d2v.data.sources import speech as src
from d2v.data.sources.text import read_wordnet_glosses
from d2v.errors import D2VError

MANIFEST_COLUMNS = ("id", "split", "speaker", "n_samples", "transcript", "shard", "offset")
MIN_SECONDS = 0.5  # shorter chunks carry too little speech to mask spans in
MAX_LABELLED_SECONDS = 40.0  # labelled audio is never chunked (it would split the transcript)


@dataclass
class Utterance:
    id: str
    split: str
    speaker: str
    audio: np.ndarray  # (S,) float32
    transcript: str = ""


def prepare_speech(cfg: SpeechConfig, seed: int, raw_dir: str | Path, wordnet_dir: str, out_dir: str | Path) -> dict:
    if cfg.source == "embedded":
        utterances, test_speakers = _embedded(cfg, seed, wordnet_dir), [cfg.flite_test_voice]
    else:
        utterances, test_speakers = _librispeech(cfg, seed, Path(raw_dir) / "speech" / "librispeech"), []
    with atomic_dir(out_dir) as staging:
        rows, stats = _write_shards(staging, utterances, cfg.shard_seconds)
        write_csv(staging / "manifest.csv", MANIFEST_COLUMNS, rows)
        atomic_write_json(staging / "meta.json", {"source": cfg.source, "sample_rate": SPEECH_SAMPLE_RATE,
                                           "dtype": "int16", "splits": stats, "test_speakers": test_speakers})  # fmt: skip
    return stats


def _chunks(utt_id: str, audio: np.ndarray, max_seconds: float) -> list[tuple[str, np.ndarray]]:
    size = int(max_seconds * SPEECH_SAMPLE_RATE)
    pieces = [audio[i : i + size] for i in range(0, len(audio), size)]
    named = [(utt_id if len(pieces) == 1 else f"{utt_id}#{k}", p) for k, p in enumerate(pieces)]
    return [(name, p) for name, p in named if len(p) >= MIN_SECONDS * SPEECH_SAMPLE_RATE]


def _embedded(cfg: SpeechConfig, seed: int, wordnet_dir: str) -> list[Utterance]:
    dirs = src.asterisk_language_dirs(cfg.asterisk_dir, cfg.pretrain_languages)
    real: dict[str, str] = {}
    transcripts = Path(cfg.real_transcripts)
    if transcripts.is_file() and "en" in src.asterisk_language_dirs(cfg.asterisk_dir, ("en",)):
        real = src.read_asterisk_transcripts(transcripts)
    en_dir = src.asterisk_language_dirs(cfg.asterisk_dir, ("en",))["en"] if real else None
    utterances = _asterisk_real(en_dir, real) if en_dir else []
    held = {f"en/{key}" for key in real}
    return utterances + _asterisk_unlabelled(cfg, seed, dirs, held) + _flite(cfg, seed, wordnet_dir)


def _asterisk_unlabelled(cfg: SpeechConfig, seed: int, dirs: dict[str, Path], held: set[str]) -> list[Utterance]:
    """Prompts of every pretraining language, shuffled, up to `pretrain_seconds`, cut into chunks of at
    most `max_seconds`; `held` keys (the labelled real-speech split) are left out."""
    files = [(f"{lang}/{p.relative_to(d).with_suffix('')}", lang, p) for lang, d in dirs.items()
             for p in sorted(d.rglob("*.g722")) if "silence" not in p.parts]  # fmt: skip
    random.Random(seed).shuffle(files)
    budget = cfg.pretrain_seconds * SPEECH_SAMPLE_RATE or float("inf")
    utterances: list[Utterance] = []
    empty: list[Path] = []
    for key, lang, path in files:
        if key in held or budget <= 0:
            continue
        if path.stat().st_size == 0:  # asterisk-core-sounds-ru ships a 0-byte is.g722: nothing to learn from
            empty.append(path)
            continue
        for name, piece in _chunks(key, src.decode_g722(path), cfg.max_seconds):
            split = assign_split(key, seed, cfg.valid_fraction)  # chunks of one file share a split
            utterances.append(Utterance(name, split, f"asterisk-{lang}", piece))
            budget -= len(piece)
    if empty:
        print(f"speech: skipped {len(empty)} empty prompt file(s), e.g. {empty[0]}", file=sys.stderr)
    return utterances


def _asterisk_real(en_dir: Path, transcripts: dict[str, str]) -> list[Utterance]:
    out = []
    for key, text in sorted(transcripts.items()):
        path = en_dir / f"{key}.g722"
        audio = src.decode_g722(path) if path.is_file() else np.zeros(0, np.float32)
        if MIN_SECONDS * SPEECH_SAMPLE_RATE <= len(audio) <= MAX_LABELLED_SECONDS * SPEECH_SAMPLE_RATE:
            out.append(Utterance(f"en/{key}", "asr_real", "asterisk-en", audio, text))
    return out


def _flite(cfg: SpeechConfig, seed: int, wordnet_dir: str) -> list[Utterance]:
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
            jobs.append((utt_id, split, voice, text))
    with ThreadPoolExecutor(max_workers=2) as pool:  # flite is a subprocess: threads overlap them
        audio = list(pool.map(lambda job: src.synthesise_flite(job[3], job[2]), jobs))
    return [Utterance(i, s, f"flite-{v}", a, t) for (i, s, v, t), a in zip(jobs, audio)]


def _examples(gloss: str) -> list[str]:
    import re

    return [s for s in re.findall(r'"([^"]+)"', gloss) if 4 <= len(s.split()) <= 20]


def _librispeech(cfg: SpeechConfig, seed: int, root: Path) -> list[Utterance]:
    ls = cfg.librispeech
    out = []
    roles = [(s, None) for s in ls.pretrain] + [(s, "asr_train") for s in ls.asr_train] + \
        [(s, "asr_valid") for s in ls.asr_valid] + [(s, "asr_test") for s in ls.asr_test]  # fmt: skip
    for subset, split in roles:
        folder = root / "LibriSpeech" / subset
        if not folder.is_dir():
            raise D2VError(f"{folder}: LibriSpeech subset missing (run dvc repro download@speech)")
        for utt, speaker, path, text in src.read_librispeech_transcripts(folder):
            if split is None:  # unlabelled pretraining copy, chunked like the embedded prompts
                for name, piece in _chunks(utt, src.read_audio(path), cfg.max_seconds):
                    out.append(Utterance(name, assign_split(utt, seed, cfg.valid_fraction), speaker, piece))
            else:
                out.append(Utterance(utt, split, speaker, src.read_audio(path), text))
    return out


def _write_shards(out: Path, utterances: list[Utterance], shard_seconds: float) -> tuple[list, dict]:
    rows, stats = [], {}
    limit = int(shard_seconds * SPEECH_SAMPLE_RATE)
    for split in sorted({u.split for u in utterances}):
        members = [u for u in utterances if u.split == split]
        buffer: list[np.ndarray] = []
        offset, shard_index = 0, 0
        for utt in members:
            if buffer and offset + len(utt.audio) > limit:
                write_npy(out / f"{split}-{shard_index:04d}.npy", np.concatenate(buffer))
                buffer, offset, shard_index = [], 0, shard_index + 1
            pcm = np.clip(np.round(utt.audio * 32768.0), -32768, 32767).astype(np.int16)  # (S,)
            buffer.append(pcm)
            rows.append((utt.id, split, utt.speaker, len(pcm), utt.transcript, f"{split}-{shard_index:04d}.npy", offset))
            offset += len(pcm)
        if buffer:
            write_npy(out / f"{split}-{shard_index:04d}.npy", np.concatenate(buffer))
        seconds = sum(len(u.audio) for u in members) / SPEECH_SAMPLE_RATE
        stats[split] = {"utterances": len(members), "seconds": round(seconds, 2)}
    return rows, stats
