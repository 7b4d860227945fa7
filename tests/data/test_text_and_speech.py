import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v.core.types import BOS_ID, EOS_ID, MASK_ID, PAD_ID
from d2v.data.datasets import SpeechCollate, TextBlockDataset, TextCollate
from d2v.data.prepare_text import _dedupe
from d2v.data.sources.speech import read_audio
from d2v.data.sources.text import parse_kjv, parse_web, read_kjv, read_web
from d2v.data.tokenizer import load_tokenizer, tokenize
from d2v.errors import D2VError

WORDS = "the quick brown fox jumps over a lazy dog while seven bright stars shine above quiet hills".split()


@pytest.fixture(scope="module")
def text_interim(tmp_path_factory) -> Path:
    interim = tmp_path_factory.mktemp("interim")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, 8)) for _ in range(300)]
    (interim / "corpus-train.txt").write_text("\n".join(lines) + "\n")
    (interim / "corpus-valid.txt").write_text("\n".join(lines[:5]) + "\n")
    (interim / "tasks").mkdir()
    (interim / "tasks" / "pairs.csv").write_text("id,split,text_a,text_b,label\n1,test,a fox,the dog,1\n")
    tasks = {"pairs": {"num_classes": 2, "pair": True, "label_names": ["no", "yes"]}}
    (interim / "meta.json").write_text(json.dumps({"tasks": tasks, "source": "test"}))
    return interim


@pytest.fixture(scope="module")
def text_root(text_interim, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "text"
    tokenize(text_interim, out, 400, 0, 0)  # byte fallback alone takes 256 ids
    return out


def test_tokenizer_has_fixed_special_ids(text_root):
    sp = load_tokenizer(text_root)
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id("<mask>")) == (0, 1, 2, 3, MASK_ID)
    assert sp.decode(sp.encode("quick brown fox")) == "quick brown fox"


def test_tokenizing_does_not_import_torch(text_interim, text_root, tmp_path):
    """The tokenize stage's code runs with torch made unimportable (it needs only the special ids),
    so the stage does not pay torch's start-up, and writes the same files."""
    out = tmp_path / "prepared"
    blocked = ("import sys; from pathlib import Path; sys.modules['torch'] = None; from d2v.cli.commands import data; "
               "from d2v.data.tokenizer import tokenize; tokenize(Path(sys.argv[1]), Path(sys.argv[2]), 400, 0, 0)")
    done = subprocess.run([sys.executable, "-c", blocked, str(text_interim), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "tokens-train.bin").read_bytes() == (text_root / "tokens-train.bin").read_bytes()


def test_tokenize_twice_gives_identical_files(text_interim, text_root, tmp_path):
    # The staging directory has a random name: none of it may reach the files (DVC hashes them).
    again = tmp_path / "text"
    tokenize(text_interim, again, 400, 0, 0)
    for name in ("spm.model", "spm.vocab", "tokens-train.bin", "meta.json"):
        assert (again / name).read_bytes() == (text_root / name).read_bytes(), name


def test_text_blocks_and_pair_collate(text_root):
    blocks = TextBlockDataset(text_root, "train", 16)
    assert len(blocks) > 10 and blocks[3][0].item() == BOS_ID and blocks[3].shape == (16,)
    assert int(blocks[len(blocks) - 1].max()) < load_tokenizer(text_root).get_piece_size()
    batch = TextCollate(max_length=8)([([10, 11, 12, 13, 14], [20, 21, 22], 1), ([10], None, 0)])
    assert batch["tokens"][0].tolist() == [BOS_ID, 10, 11, EOS_ID, EOS_ID, 20, 21, EOS_ID]
    assert batch["tokens"][1].tolist()[:3] == [BOS_ID, 10, EOS_ID] and batch["tokens"][1, 3].item() == PAD_ID
    assert batch["padding_mask"][1].tolist() == [False] * 3 + [True] * 5 and batch["label"].tolist() == [1, 0]


def test_bible_parsers_align_verses():
    kjv = parse_kjv("\n1 Samuel 3\n\n  1 And the child Samuel ministered.\n  2 And it came to pass.\n")
    web = parse_web("I Samuel 3:1: The child Samuel served Yahweh.\nI Samuel 3:2: At that time,\n"
                    "when Eli was laid down.\nRevelation of John 1:1: This is the Revelation.\n")
    assert kjv[("1 Samuel", 3, 1)] == "And the child Samuel ministered."
    assert web[("1 Samuel", 3, 2)] == "At that time, when Eli was laid down."
    assert ("Revelation", 1, 1) in web and set(kjv) & set(web) == {("1 Samuel", 3, 1), ("1 Samuel", 3, 2)}


def test_web_read_in_two_halves_parses_as_the_whole_range():
    """The two concurrent diatheke ranges give every verse the KJV also has (the ones the paraphrase
    task can pair) exactly as one dump of the whole Bible does; real Debian packages, no fixture."""
    whole = parse_web(subprocess.run(["diatheke", "-b", "engWEB2015eb", "-f", "plain", "-k", "Gen 1:1-Rev 22:21"],
                                     capture_output=True, check=True).stdout.decode("utf-8", errors="replace"))
    halves, kjv = read_web(), read_kjv()
    pairable = set(kjv) & set(whole)
    assert len(pairable) > 30_000 and set(kjv) & set(halves) == pairable
    assert [halves[key] for key in sorted(pairable)] == [whole[key] for key in sorted(pairable)]
    assert halves[("Psalms", 150, 6)] == whole[("Psalms", 150, 6)] and ("Proverbs", 1, 1) in halves  # the seam


def test_duplicate_texts_are_dropped():
    rows = [("a", "train", "x", "", 1), ("b", "test", "x", "", 0), ("c", "test", "y", "", 0)]
    assert [r[0] for r in _dedupe(rows)] == ["a", "c"]


@pytest.mark.parametrize("rate, channels", [(8000, 1), (16000, 2)])
def test_other_rates_and_stereo_audio_become_16k_mono(tmp_path, rate, channels):
    path = tmp_path / "other.wav"
    sf.write(path, np.zeros((rate, channels), np.float32), rate)
    assert read_audio(path).shape == (16000,)  # one second, resampled and downmixed


def test_empty_or_corrupt_audio_is_named(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(D2VError, match="empty.wav"):
        read_audio(tmp_path / "empty.wav")


def test_speech_collate_pads_or_crops():
    items = [(np.ones(10, np.float32), None, "a"), (np.ones(6, np.float32), "hi", "b")]
    padded = SpeechCollate()(items)
    assert padded["waveform"].shape == (2, 10) and padded["padding_mask"][1].tolist() == [False] * 6 + [True] * 4
    cropped = SpeechCollate(crop=True)(items)
    assert cropped["waveform"].shape == (2, 6) and not cropped["padding_mask"].any()
