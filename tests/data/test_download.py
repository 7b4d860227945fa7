import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from d2v.data.download import download, extract
from d2v.data.sources.glue import read_glue_tasks
from d2v.data.config import GlueSource
from d2v.data.sources.speech import read_librispeech_transcripts
from d2v.errors import D2VError


def test_download_resumes_after_interruption(http_root, tmp_path):
    root, base, requests = http_root
    payload = bytes(range(256)) * 1000
    (root / "a.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "a.bin"
    dest.parent.mkdir()
    (dest.parent / "a.bin.part").write_bytes(payload[:100_000])  # an earlier, interrupted attempt
    digest = download(f"{base}/a.bin", dest, hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert digest == hashlib.sha256(payload).hexdigest()
    assert requests == [("/a.bin", 100_000)]
    download(f"{base}/a.bin", dest, digest)  # idempotent: verified file, no new request
    assert len(requests) == 1


def test_download_checksum_mismatch_leaves_nothing(http_root, tmp_path):
    root, base, _ = http_root
    (root / "b.bin").write_bytes(b"hello")
    dest = tmp_path / "b.bin"
    with pytest.raises(D2VError, match="sha256 mismatch"):
        download(f"{base}/b.bin", dest, "0" * 64)
    assert not dest.exists() and not (tmp_path / "b.bin.part").exists()


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


@pytest.mark.parametrize(
    "members, links",
    [({"../evil.txt": b"x"}, None), ({"/tmp/evil.txt": b"x"}, None), ({"ok.txt": b"x"}, {"link": "../../etc"})],
)
def test_extract_rejects_unsafe_members(tmp_path, members, links):
    archive = _tar(tmp_path / "bad.tar.gz", members, links)
    with pytest.raises(D2VError, match="unsafe archive member"):
        extract(archive, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*.txt"))


def test_librispeech_layout_downloads_and_parses(http_root, tmp_path):
    import numpy as np
    import soundfile as sf

    root, base, _ = http_root
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 16000, format="FLAC")
    prefix = "LibriSpeech/dev-clean/84/121123/"
    _tar(root / "dev-clean.tar.gz", {prefix + "84-121123-0000.flac": buf.getvalue(),
                                     prefix + "84-121123.trans.txt": b"84-121123-0000 GO DO YOU HEAR\n"})
    archive = tmp_path / "cache" / "dev-clean.tar.gz"
    md5 = hashlib.md5((root / "dev-clean.tar.gz").read_bytes()).hexdigest()
    download(f"{base}/dev-clean.tar.gz", archive, md5, "md5")
    out = extract(archive, tmp_path / "ls")
    rows = read_librispeech_transcripts(out / "LibriSpeech" / "dev-clean")
    assert [(r[0], r[1], r[3]) for r in rows] == [("84-121123-0000", "84", "GO DO YOU HEAR")]
    assert rows[0][2].is_file()


def test_glue_archive_layout(tmp_path):
    (tmp_path / "glue").mkdir()
    with zipfile.ZipFile(tmp_path / "RTE.zip", "w") as zf:
        zf.writestr("RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tentailment\n1\tE.\tF.\tnot_entailment\n")
        zf.writestr("RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tG.\tH.\tentailment\n")
    extract(tmp_path / "RTE.zip", tmp_path / "glue")  # the download stage unpacks every GLUE zip
    tasks, meta = read_glue_tasks(GlueSource("http://x", ("RTE",), {}, 0.0), 0, tmp_path / "glue")
    assert [r[1:] for r in tasks["rte"]] == [("train", "A b.", "C d.", 0), ("train", "E.", "F.", 1), ("test", "G.", "H.", 0)]
    assert meta["rte"] == {"num_classes": 2, "pair": True, "label_names": ["entailment", "not_entailment"]}


def test_hashing_a_large_file_shows_progress_and_gives_the_same_digest(tmp_path, monkeypatch, capsys) -> None:
    import hashlib

    from d2v.data import download as download_module

    path = tmp_path / "archive.tar"
    path.write_bytes(bytes(range(256)) * (3 * 4096))  # 3 MiB
    monkeypatch.setattr(download_module, "PROGRESS_BYTES", 1 << 20)
    monkeypatch.setenv("CI", "1")  # plain lines, not a bar
    assert download_module.file_digest(path, "md5") == hashlib.md5(path.read_bytes()).hexdigest()
    assert "[md5 archive.tar] 3/3 MiB" in capsys.readouterr().err
