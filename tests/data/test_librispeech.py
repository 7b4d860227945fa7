"""LibriSpeech / Libri-light / your own audio at the real layout, on generated fixtures: download with
pinned checksums from a loopback server, one split per evaluation subset, resampling, bad input,
and a killed prepare resuming to the same bytes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import d2v.data.prepare_speech as prep
from d2v.config import load_params
from d2v.data import stages
from d2v.data.prepare_speech import AudioJob, list_audio_dir, prepare_speech, write_shards
from d2v.data.sources.speech import read_audio
from d2v.data.validate import validate
from d2v.errors import D2VError

REPO = Path(__file__).resolve().parents[2]
SUBSETS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")


def _flac(seconds: float, freq: float, rate: int = 16000, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([wave] * channels, axis=1), rate, format="FLAC")
    return buf.getvalue()


def _chapter(prefix: str, speaker: int, chapter: int, n: int, seed: int) -> dict[str, bytes]:
    """One LibriSpeech chapter folder: n FLAC utterances and their trans.txt."""
    files, lines = {}, []
    for k in range(n):
        utt = f"{speaker}-{chapter}-{k:04d}"
        files[f"{prefix}/{speaker}/{chapter}/{utt}.flac"] = _flac(0.8 + 0.1 * k, 200 + 50 * seed + 20 * k)
        lines.append(f"{utt} WORDS OF {seed} NUMBER {k}")
    files[f"{prefix}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def _targz(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _librispeech_archives(folder: Path) -> dict[str, str]:
    """<subset>.tar.gz for every subset (two speakers each) -> their md5."""
    md5 = {}
    for s, subset in enumerate(SUBSETS):
        files = _chapter(f"LibriSpeech/{subset}", 100 + s, 10, 3, s) | _chapter(f"LibriSpeech/{subset}", 200 + s, 20, 2, s)
        archive = _targz(folder / f"{subset}.tar.gz", files)
        md5[subset] = hashlib.md5(archive.read_bytes()).hexdigest()
    return md5


def _librilight_archive(path: Path) -> Path:
    files: dict[str, bytes] = {}
    for part in range(6):
        files |= _chapter(f"librispeech_finetuning/1h/{part}/clean", 300 + part, 30, 1, 10 + part)
    files |= _chapter("librispeech_finetuning/1h/0/other", 400, 40, 1, 20)
    files |= _chapter("librispeech_finetuning/9h/clean", 500, 50, 2, 30)
    files |= _chapter("librispeech_finetuning/9h/other", 600, 60, 1, 40)
    return _targz(path, files)


def _speech_config(**librispeech):
    speech = load_params(REPO / "params.yaml").data.speech
    source = replace(speech.librispeech, **librispeech)
    return replace(speech, source="librispeech", librispeech=source, workers=1, shard_seconds=2.0, valid_fraction=0.3)


@pytest.fixture
def librispeech_raw(http_root, tmp_path, monkeypatch) -> tuple[Path, object]:
    """Every subset and the Libri-light archive downloaded (md5 / sha256 pinned) from 127.0.0.1."""
    served, base, _ = http_root
    md5 = _librispeech_archives(served)
    librilight = _librilight_archive(served / "librispeech_finetuning.tgz")
    sha = hashlib.sha256(librilight.read_bytes()).hexdigest()
    speech = _speech_config(base_url=base, md5=md5, librilight_url=f"{base}/librispeech_finetuning.tgz",
                            librilight_sha256=sha, asr_train=("librilight-1h",))  # fmt: skip
    data = replace(load_params(REPO / "params.yaml").data, raw_dir=str(tmp_path / "raw"), speech=speech)
    monkeypatch.setattr(stages, "CACHE_DIR", tmp_path / "cache")
    record = stages.run_download(data, "speech")
    assert set(record["md5"]) == set(SUBSETS) and record["librilight_sha256"] == sha
    return tmp_path / "raw", speech


def test_each_evaluation_subset_is_its_own_split_and_validates(librispeech_raw, tmp_path):
    raw, speech = librispeech_raw
    speech = replace(speech, librispeech=replace(speech.librispeech, asr_train=("train-clean-100",)))
    out = tmp_path / "prepared"
    stats = prepare_speech(speech, 0, raw, "", out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["extra_test_splits"] == ["asr_dev_clean", "asr_test_clean"]
    assert meta["subsets"] == {"asr_train": ["train-clean-100"], "asr_valid": "dev-other", "asr_test": "test-other",
                               "asr_dev_clean": "dev-clean", "asr_test_clean": "test-clean"}  # fmt: skip
    assert {k: v["utterances"] for k, v in stats.items() if k.startswith("asr_")} == {
        "asr_train": 5, "asr_valid": 5, "asr_test": 5, "asr_dev_clean": 5, "asr_test_clean": 5}  # fmt: skip
    assert stats["train"]["utterances"] + stats["valid"]["utterances"] == 5
    manifest = (out / "manifest.csv").read_text()
    assert "104-10-0000,asr_test,104," in manifest  # test-other is speaker 104 of the fixture
    assert "train-clean-100/100-10-0000," in manifest  # the pretraining copy has its own id
    report = validate("speech", out, tmp_path / "reports" / "speech.json", speech.max_seconds)
    assert report["success"]
    assert {k: v for k, v in report["rows"].items() if k.startswith("manifest.asr")} == {
        "manifest.asr_dev_clean": 5, "manifest.asr_test": 5, "manifest.asr_test_clean": 5,
        "manifest.asr_train": 5, "manifest.asr_valid": 5}  # fmt: skip


@pytest.mark.parametrize(("name", "speakers"), [("librilight-10min", {"300", "400"}),
                                                 ("librilight-1h", {"300", "301", "302", "303", "304", "305", "400"}),
                                                 ("librilight-10h", {"300", "301", "302", "303", "304", "305", "400", "500", "600"})])  # fmt: skip
def test_librilight_sets_fill_asr_train(librispeech_raw, name, speakers):
    raw, speech = librispeech_raw
    speech = replace(speech, librispeech=replace(speech.librispeech, asr_train=(name,)))
    jobs = prep.list_jobs(speech, 0, raw, "").jobs
    assert {j.speaker for j in jobs if j.split == "asr_train"} == speakers


def test_a_wrong_or_missing_checksum_is_refused(http_root, tmp_path, monkeypatch):
    served, base, _ = http_root
    md5 = _librispeech_archives(served)
    monkeypatch.setattr(stages, "CACHE_DIR", tmp_path / "cache")
    data = load_params(REPO / "params.yaml").data
    for pins, message in (({**md5, "dev-clean": "0" * 32}, "md5 mismatch"), ({k: v for k, v in md5.items() if k != "dev-clean"}, "no checksum for 'dev-clean'")):  # fmt: skip
        speech = _speech_config(base_url=base, md5=pins)
        with pytest.raises(D2VError, match=message):
            stages.run_download(replace(data, raw_dir=str(tmp_path / "raw"), speech=speech), "speech")


def test_params_pin_the_published_md5_of_every_librispeech_archive():
    ls = load_params(REPO / "params.yaml").data.speech.librispeech
    assert set(ls.md5) == {*SUBSETS, "train-clean-360", "train-other-500"} and all(len(v) == 32 for v in ls.md5.values())
    assert len(ls.librilight_sha256) == 64


# ------------------------------------------------------------------------------------------ audio


def test_any_rate_and_channel_count_becomes_16k_mono(tmp_path):
    path = tmp_path / "music.wav"
    t = np.arange(44100) / 44100
    sf.write(path, np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5, 44100)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    assert 0.2 < np.abs(audio).max() < 0.3  # the two channels averaged


def test_a_user_audio_dir_is_unlabelled_pretraining_speech(tmp_path, monkeypatch):
    root = tmp_path / "audio"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "a.flac").write_bytes(_flac(1.5, 300))
    (root / "stereo.wav").write_bytes(_flac(2.0, 500, rate=44100, channels=2))  # FLAC bytes, .wav name: content decides
    (root / "notes.txt").write_text("not audio")
    speech = load_params(REPO / "params.yaml").data.speech
    speech = replace(speech, source="audio_dir", audio_dir=replace(speech.audio_dir, root=str(root)),
                     workers=1, asr_sentences=2, valid_fraction=0.0)  # fmt: skip
    jobs = list_audio_dir(speech, 0)
    assert [(j.key, j.speaker) for j in jobs] == [("alice/a", "alice"), ("stereo", "audio_dir")]
    out = tmp_path / "prepared"
    stats = prepare_speech(speech, 0, tmp_path, speech_wordnet(), out)
    assert stats["train"] == {"utterances": 2, "seconds": 3.5}
    assert {"asr_train", "asr_test"} <= set(stats)  # the flite ASR splits keep evaluation running
    assert json.loads((out / "meta.json").read_text())["extra_test_splits"] == []


def speech_wordnet() -> str:
    return load_params(REPO / "params.yaml").data.text.wordnet_dir


# ------------------------------------------------------------------------------------------ bad input


def _subset_dir(tmp_path: Path, trans: bytes, flac_ok: bool = True) -> Path:
    speech_raw = tmp_path / "raw" / "speech"
    for speaker, subset in ((1, "train-clean-100"), (3, "dev-other"), (5, "test-other")):
        folder = speech_raw / "librispeech" / subset / "LibriSpeech" / subset / str(speaker) / "2"
        folder.mkdir(parents=True)
        for k in range(3):
            ok = flac_ok or k or subset != "train-clean-100"
            (folder / f"{speaker}-2-{k:04d}.flac").write_bytes(_flac(1.0, 300 + k) if ok else b"not a flac")
        lines = b"".join(b"%d-2-%04d WORD %d\n" % (speaker, k, k) for k in range(3))
        (folder / f"{speaker}-2.trans.txt").write_bytes(trans if subset == "dev-other" else lines)
    return tmp_path / "raw"


def _bad_config():
    return _speech_config(pretrain=(), asr_train=("train-clean-100",), asr_valid=("dev-other",), asr_test=("test-other",))


@pytest.mark.parametrize(("trans", "message"), [
    (b"3-2-0000 CAF\xe9\n", r"dev-other/3/2/3-2.trans.txt:1: transcript is not UTF-8"),
    (b"3-2-0000 A\n3-2-0001\n", r"dev-other/3/2/3-2.trans.txt:2: utterance 3-2-0001 has an empty transcript"),
])  # fmt: skip
def test_bad_transcripts_name_file_and_line(tmp_path, trans, message):
    raw = _subset_dir(tmp_path, trans)
    with pytest.raises(D2VError, match=message):
        prepare_speech(_bad_config(), 0, raw, "", tmp_path / "out")


def test_duplicate_utterance_ids_name_both_files(tmp_path):
    raw = _subset_dir(tmp_path, b"3-2-0000 A\n")
    cfg = _bad_config()
    cfg = replace(cfg, librispeech=replace(cfg.librispeech, asr_valid=("test-other",)))  # asr_valid = asr_test
    with pytest.raises(D2VError, match=r"duplicate utterance id '5-2-0000': .*test-other/5/2/5-2-0000.flac and .*test-other/5/2/5-2-0000.flac"):
        prepare_speech(cfg, 0, raw, "", tmp_path / "out")


def test_an_unreadable_audio_file_is_named(tmp_path):
    raw = _subset_dir(tmp_path, b"3-2-0000 A\n", flac_ok=False)
    with pytest.raises(D2VError, match=r"asr_train: 1 of 3 items unreadable.*1-2-0000: .*1/2/1-2-0000.flac: cannot read audio"):
        prepare_speech(_bad_config(), 0, raw, "", tmp_path / "out")


# ------------------------------------------------------------------------------------------ resume


def _jobs(folder: Path) -> list[AudioJob]:
    jobs = []
    for k in range(12):
        path = folder / f"u{k:02d}.flac"
        path.write_bytes(_flac(0.7 + 0.2 * (k % 4), 150 + 30 * k))
        split = "asr_train" if k % 3 else "train"
        jobs.append(AudioJob(f"u{k:02d}", split, "s", str(path), "file", "" if split == "train" else f"TEXT {k}",
                             max_seconds=0.6))  # fmt: skip
    return jobs


def _run(jobs: list[AudioJob], out: Path) -> None:
    """The stage's staging and shard writing, without a source listing."""
    from d2v.data.io import write_csv
    from d2v.data.shards import fingerprint, resumable_dir

    with resumable_dir(out, fingerprint("test")) as staging:
        rows, stats = write_shards(staging, jobs, 1.0, None)
        write_csv(staging / "manifest.csv", prep.MANIFEST_COLUMNS, rows)
        (staging / "stats.json").write_text(json.dumps(stats))


@pytest.mark.parametrize("kill_at", [3, 7, 10])
def test_a_killed_prepare_resumes_from_its_last_shard_to_the_same_bytes(tmp_path, monkeypatch, kill_at):
    jobs = _jobs(tmp_path)
    _run(jobs, tmp_path / "whole")
    real = prep.decode_job
    calls: list[str] = []

    def dying(job: AudioJob):
        calls.append(job.key)
        if job.key == f"u{kill_at:02d}":
            raise KeyboardInterrupt  # the kill
        return real(job)

    monkeypatch.setattr(prep, "decode_job", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(jobs, tmp_path / "killed")
    calls.clear()
    monkeypatch.setattr(prep, "decode_job", lambda job: calls.append(job.key) or real(job))
    _run(jobs, tmp_path / "killed")
    assert 0 < len(calls) < len(jobs)  # it continued, it did not start over
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert whole == sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert len([n for n in whole if n.endswith(".npy")]) > 3
    for name in whole:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "killed" / name).read_bytes(), name


# ------------------------------------------------------------------------------------------ report


@pytest.mark.parametrize(("asr_valid", "asr_test", "task", "words"), [
    (("dev-other",), ("test-other", "test-clean"), "ctc", "LibriSpeech test-other"),
    (("dev-other",), ("test-clean", "test-other"), "ctc_asr_test_other_wer", "LibriSpeech test-other"),
    (("dev-other",), ("test-clean",), "ctc", "NOT the paper's test set"),
])  # fmt: skip
def test_the_report_sets_the_papers_test_other_wer_beside_ours(asr_valid, asr_test, task, words):
    from d2v.report.reference import PAPER_NUMBERS, our_comparison

    data = load_params(REPO / "params.yaml").data
    speech = _speech_config(asr_valid=asr_valid, asr_test=asr_test)
    ref = next(r for r in PAPER_NUMBERS if r.modality == "speech")
    ours, label = our_comparison(ref, replace(data, speech=speech))
    assert ours == task and words in label
    assert our_comparison(ref, data)[0] == "ctc"  # the embedded default: unchanged
