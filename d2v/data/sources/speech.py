"""Speech sources: G.722 prompts (PyAV), any audio file (soundfile or PyAV, resampled to 16 kHz mono),
flite TTS, transcript files."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from d2v.audio import SPEECH_SAMPLE_RATE
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
    """Any audio file soundfile or PyAV reads, at any rate and channel count -> float32 (S,) 16 kHz mono.

    soundfile first (WAV, FLAC, OGG: exact and fast), PyAV for the rest (MP3, M4A, Opus, ...)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (S, C)
    except (sf.LibsndfileError, RuntimeError, OSError) as sf_exc:
        data, rate = _decode_with_pyav(path, sf_exc)
    if data.shape[0] == 0:
        raise D2VError(f"{path}: empty audio file")
    return to_16k_mono(data, rate)


def _decode_with_pyav(path: str | Path, sf_exc: Exception) -> tuple[np.ndarray, int]:
    """(S, C) float32 and the stream's rate, or a D2VError naming the file and both readers' reasons."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            planar = av.AudioResampler(format="fltp")  # keeps rate and channels, makes frames (C, n)
            frames = [f.to_ndarray() for frame in container.decode(stream) for f in planar.resample(frame)]
            rate = stream.rate
    except (av.error.FFmpegError, OSError, IndexError) as av_exc:
        reason = f"soundfile: {sf_exc}; PyAV: {av_exc or 'no audio stream'}"
        raise D2VError(f"{path}: cannot read audio ({reason})") from av_exc
    if not frames:  # PyAV guesses a format for any bytes: nothing decoded means not audio it knows
        raise D2VError(f"{path}: cannot read audio (soundfile: {sf_exc}; PyAV: no audio decoded)")
    return np.concatenate(frames, axis=1).T.astype(np.float32), int(rate)


def to_16k_mono(data: np.ndarray, rate: int) -> np.ndarray:
    """(S, C) float32 at `rate` -> (S',) float32 at 16 kHz: channels averaged, then resampled.
    16 kHz mono input comes back unchanged (the embedded flite audio stays bit-identical)."""
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if rate == SPEECH_SAMPLE_RATE:
        return mono
    import torch
    from torchaudio.functional import resample

    with torch.no_grad():
        return resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, SPEECH_SAMPLE_RATE).numpy()


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
    """(utterance id, speaker, audio path, transcript) for every *.trans.txt under `root`, sorted.

    A transcript file that is not UTF-8, or a line with an id and no text, is an error naming the file
    and line: LibriSpeech and Libri-light have neither, so either means a damaged or foreign corpus."""
    rows = []
    for trans in sorted(Path(root).rglob("*.trans.txt")):
        for number, line in enumerate(_read_utf8(trans).splitlines(), start=1):
            utt, _, text = line.strip().partition(" ")
            if not utt:
                continue
            if not text.strip():
                raise D2VError(f"{trans}:{number}: utterance {utt} has an empty transcript")
            rows.append((utt, utt.split("-")[0], trans.parent / f"{utt}.flac", text.strip()))
    return rows


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise D2VError(f"{path}:{line}: transcript is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                       f"at offset {exc.start})") from None  # fmt: skip
