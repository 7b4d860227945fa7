"""Speech sources: G.722 prompts (PyAV), WAV/FLAC (soundfile), flite TTS, transcript files."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from d2v.core.types import SPEECH_SAMPLE_RATE
from d2v.errors import D2VError


def decode_g722(path: str | Path) -> np.ndarray:
    """A .g722 file (raw G.722, always 16 kHz mono) -> float32 (S,) in [-1, 1]."""
    import av

    try:
        with av.open(str(path), format="g722") as container:
            frames = [frame.to_ndarray() for frame in container.decode(audio=0)]
    except (av.error.FFmpegError, OSError) as exc:
        raise D2VError(f"{path}: cannot decode G.722 audio ({exc})") from exc
    if not frames:
        raise D2VError(f"{path}: empty audio file")
    samples = np.concatenate(frames, axis=-1)[0]  # (S,) int16
    return samples.astype(np.float32) / 32768.0


def read_audio(path: str | Path) -> np.ndarray:
    """WAV/FLAC -> float32 (S,); anything but 16 kHz mono is an error naming the file."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise D2VError(f"{path}: cannot read audio ({exc})") from exc
    if rate != SPEECH_SAMPLE_RATE or data.shape[1] != 1:
        raise D2VError(
            f"{path}: expected 16000 Hz mono audio, got {rate} Hz with {data.shape[1]} channel(s)"
        )
    if data.shape[0] == 0:
        raise D2VError(f"{path}: empty audio file")
    return data[:, 0]


def load_any(path: str | Path) -> np.ndarray:
    return decode_g722(path) if str(path).endswith(".g722") else read_audio(path)


def synthesise_flite(text: str, voice: str) -> np.ndarray:
    """Speak `text` with a flite voice (16 kHz voices only) -> float32 (S,)."""
    fd, wav = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", wav], check=True, capture_output=True)
        return read_audio(wav)
    except FileNotFoundError:
        raise D2VError("flite: not installed (make setup installs infra/apt-packages.txt)") from None
    except subprocess.CalledProcessError as exc:
        raise D2VError(f"flite -voice {voice}: failed: {exc.stderr.decode(errors='replace')[-200:]}") from None
    finally:
        os.unlink(wav)


def asterisk_language_dirs(root: str | Path, languages: tuple[str, ...]) -> dict[str, Path]:
    """Asterisk prompt directories named <lang>_<REGION>_<voice>, e.g. en_US_f_Allison."""
    root = Path(root)
    found = {p.name.split("_")[0]: p for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}
    missing = [lang for lang in languages if lang not in found]
    if missing:
        raise D2VError(f"{root}: no Asterisk prompts for {missing} (install asterisk-core-sounds-<lang>-g722)")
    return {lang: found[lang] for lang in languages}


def read_asterisk_transcripts(path: str | Path) -> dict[str, str]:
    """core-sounds-<lang>.txt: 'key: transcript' lines; ';' comments; '[tone]'-like entries dropped."""
    transcripts = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if ":" not in line or line.startswith(";"):
            continue
        key, text = (part.strip() for part in line.split(":", 1))
        if text and not re.match(r"^[\[\(<]", text):
            transcripts[re.sub(r"\.wav$", "", key)] = text
    return transcripts


def read_librispeech_transcripts(root: str | Path) -> list[tuple[str, str, Path, str]]:
    """(utterance id, speaker, audio path, transcript) for every *.trans.txt under `root`."""
    rows = []
    for trans in sorted(Path(root).rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.partition(" ")
            if utt:
                rows.append((utt, utt.split("-")[0], trans.parent / f"{utt}.flac", text.strip()))
    return rows
