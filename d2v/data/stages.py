"""The data stages as functions of the `data` params slice: download, prepare, tokenize, validate.

Called by `d2v data <action> <modality>` (and so by dvc.yaml and Prefect); one code path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from d2v.data.config import DataConfig
from d2v.data.download import pip_download_sdist, sha256_file
from d2v.data.sources.corpus import describe_corpus
from d2v.data.sources.glue import download_glue
from d2v.atomic import atomic_dir, atomic_write_json
from d2v.errors import D2VError
from d2v.layout import DOWNLOAD_CACHE_DIR as CACHE_DIR
from d2v.layout import Layout



def run_download(cfg: DataConfig, modality: str) -> dict:
    """Fetch what a source needs into <raw_dir>/<modality> and record the inputs in sources.json."""
    with atomic_dir(Layout.from_data(cfg).raw(modality)) as staging:
        record = {"image": _download_image, "speech": _download_speech, "text": _download_text}[modality](cfg, staging)
        atomic_write_json(staging / "sources.json", record)
    return record


def _download_image(cfg: DataConfig, out: Path) -> dict:
    if cfg.image.source in ("imagenet", "folder"):
        from d2v.data.sources.imagenet import describe_local_source

        # ImageNet's licence forbids automatic download: the stage records what the user provides,
        # with a digest of its listing so that DVC sees a changed dataset (prepare hashes the bytes).
        root = cfg.image.imagenet.root if cfg.image.source == "imagenet" else cfg.image.folder.root
        return {"source": cfg.image.source, **describe_local_source(root)}
    root = Path(cfg.image.fashion_mnist_dir)
    files = sorted(root.glob("*-ubyte.gz"))
    if len(files) != 4:
        raise D2VError(f"{root}: expected the 4 Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist)")
    return {"source": "embedded", "files": {p.name: sha256_file(p) for p in files}}


def _download_text(cfg: DataConfig, out: Path) -> dict:
    t = cfg.text
    corpus = {} if t.corpus.source == "embedded" else {"corpus": describe_corpus(t.corpus.dir)}
    if t.source == "glue":
        digests = download_glue(t.glue, CACHE_DIR / "glue", out / "glue")
        return {"source": "glue", "sha256": digests, **corpus}
    sdist = pip_download_sdist("vaderSentiment", t.vader_version, t.vader_sha256, CACHE_DIR / "pypi")
    shutil.copy2(sdist, out / sdist.name)
    return {"source": "embedded", "vader_sdist": {sdist.name: t.vader_sha256},
            "packages": _debian_versions(["wordnet-base", "fortunes", "bible-kjv", "sword-text-web"]), **corpus}  # fmt: skip


def _download_speech(cfg: DataConfig, out: Path) -> dict:
    s = cfg.speech
    if s.source == "librispeech":
        from d2v.data.sources.librispeech import download_librispeech

        return {"source": "librispeech", **download_librispeech(s.librispeech, CACHE_DIR, out)}
    if s.source == "audio_dir":
        # Your own files: recorded by name and size (hashing hours of audio would double the stage).
        root = Path(s.audio_dir.root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        return {"source": "audio_dir", "root": str(root), "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    packages = [f"asterisk-core-sounds-{lang}-g722" for lang in s.pretrain_languages] + ["flite"]
    return {"source": "embedded", "packages": _debian_versions(packages)}


def _debian_versions(packages: list[str]) -> dict[str, str]:
    """Installed versions (the embedded sources are Debian packages); '' when dpkg is absent."""
    versions = {}
    for pkg in packages:
        try:
            done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
            versions[pkg] = done.stdout.strip() if done.returncode == 0 else "not installed"
        except FileNotFoundError:
            versions[pkg] = ""
    return versions


def run_prepare(cfg: DataConfig, modality: str, seed: int) -> dict:
    out = Layout.from_data(cfg).prepare_output(modality)
    if modality == "image":
        from d2v.data.prepare_image import prepare_image

        return prepare_image(cfg.image, seed, out)
    if modality == "speech":
        from d2v.data.prepare_speech import prepare_speech

        return prepare_speech(cfg.speech, seed, cfg.raw_dir, cfg.text.wordnet_dir, out)
    from d2v.data.prepare_text import prepare_text

    return prepare_text(cfg.text, seed, cfg.raw_dir, out)


def run_tokenize(cfg: DataConfig, seed: int) -> dict:
    from d2v.data.tokenizer import tokenize

    layout = Layout.from_data(cfg)
    return tokenize(layout.interim("text"), layout.prepared("text"), cfg.text.vocab_size,
                    cfg.text.tokenizer_sentences, seed, cfg.text.corpus.task_text_copies)  # fmt: skip


def run_validate(cfg: DataConfig, modality: str) -> dict:
    from d2v.data.validate import validate

    layout = Layout.from_data(cfg)
    return validate(modality, layout.prepared(modality), layout.validation_report(modality), cfg.speech.max_seconds)
