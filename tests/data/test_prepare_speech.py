"""The unlabelled Asterisk pretraining set, on real prompts from the Debian packages."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from d2v.config import load_params
from d2v.data.prepare_speech import _asterisk_unlabelled, decode_job
from d2v.data.sources.speech import decode_g722

REPO = Path(__file__).resolve().parents[2]
SPANISH = Path("/usr/share/asterisk/sounds/es_MX_f_Allison")
PROMPTS = ("vm-changeto", "vm-deleted", "vm-sorry")  # 1.6-2.8 s each, above MIN_SECONDS


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    assert SPANISH.is_dir(), "asterisk-core-sounds-es-g722 is not installed (make setup installs it)"
    lang = tmp_path / "es_MX_f_Allison"
    lang.mkdir()
    for name in PROMPTS:
        shutil.copy(SPANISH / f"{name}.g722", lang)
    return lang


def _config(pretrain_seconds: float, max_seconds: float = 12.0):
    speech = load_params(REPO / "params.yaml").data.speech
    return replace(speech, pretrain_seconds=pretrain_seconds, max_seconds=max_seconds, valid_fraction=0.0)


def test_empty_prompt_files_are_skipped_and_reported(prompt_dir, capsys):
    # asterisk-core-sounds-ru ships a 0-byte is.g722; "pretrain_seconds: 0 = all" used to stop on it.
    (prompt_dir / "is.g722").write_bytes(b"")
    utterances = _asterisk_unlabelled(_config(0), 0, {"es": prompt_dir}, set())
    assert sorted(u.key for u in utterances) == [f"es/{name}" for name in PROMPTS]
    assert all(u.split == "train" and u.speaker == "asterisk-es" for u in utterances)
    assert "skipped 1 empty prompt file(s)" in capsys.readouterr().err


def test_budget_and_held_out_prompts(prompt_dir):
    lengths = {name: len(decode_g722(prompt_dir / f"{name}.g722")) for name in PROMPTS}
    held = {"es/vm-deleted"}
    everything = _asterisk_unlabelled(_config(0), 0, {"es": prompt_dir}, held)
    assert sorted(u.key for u in everything) == ["es/vm-changeto", "es/vm-sorry"]
    # A budget smaller than one prompt still takes that whole prompt, then stops.
    one = _asterisk_unlabelled(_config(min(lengths.values()) / 16_000 / 2), 0, {"es": prompt_dir}, held)
    assert len(one) == 1 and len(decode_job(one[0]).pieces[0][1]) == lengths[one[0].key.split("/")[1]]


def test_the_budget_counts_g722_samples_from_the_file_size(prompt_dir):
    # The budget is spent while listing, before any audio is decoded: 64 kbit/s G.722 = 2 samples a byte.
    for name in PROMPTS:
        path = prompt_dir / f"{name}.g722"
        assert len(decode_g722(path)) == 2 * path.stat().st_size
