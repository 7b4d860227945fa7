"""LibriSpeech and Libri-light on disk: which archives a config needs, where their subsets land, and
which prepared split each subset becomes.

Downloads extract under <raw_dir>/speech:
  librispeech/<subset>/LibriSpeech/<subset>/<speaker>/<chapter>/<id>.flac + <speaker>-<chapter>.trans.txt
  (one folder per archive: every archive's top level is LibriSpeech/, and extract() replaces a
  top-level folder that exists rather than merging into it)
  librilight/librispeech_finetuning/1h/{0..5}/{clean,other}/<speaker>/<chapter>/...  (same file layout)
  librilight/librispeech_finetuning/9h/{clean,other}/<speaker>/<chapter>/...
"""

from __future__ import annotations

from pathlib import Path

from d2v.data.config import LibriSpeechSource
from d2v.errors import D2VError

LIBRISPEECH_DIR = "librispeech"
LIBRILIGHT_DIR = "librilight"
LIBRILIGHT_ARCHIVE = "librispeech_finetuning.tgz"
# The paper's low-resource fine-tuning sets: folders of librispeech_finetuning/ (10 h = 1 h + 9 h).
LIBRILIGHT_SETS: dict[str, tuple[str, ...]] = {
    "librilight-10min": ("1h/0",),
    "librilight-1h": ("1h",),
    "librilight-10h": ("1h", "9h"),
}


def is_librilight(name: str) -> bool:
    return name.startswith("librilight-")


def archive_subsets(cfg: LibriSpeechSource) -> list[str]:
    """The LibriSpeech subsets the config names (Libri-light sets come from one other archive)."""
    names = {*cfg.pretrain, *cfg.asr_train, *cfg.asr_valid, *cfg.asr_test}
    return sorted(n for n in names if not is_librilight(n))


def needs_librilight(cfg: LibriSpeechSource) -> bool:
    return any(is_librilight(n) for n in cfg.asr_train)


def evaluation_splits(cfg: LibriSpeechSource) -> dict[str, str]:
    """Prepared split -> subset: the first asr_valid and asr_test subsets keep those names, every further
    one becomes its own test split asr_<subset> (dev-clean -> asr_dev_clean), scored separately."""
    if not cfg.asr_valid or not cfg.asr_test:
        raise D2VError("data.speech.librispeech: asr_valid and asr_test need at least one subset each")
    splits = {"asr_valid": cfg.asr_valid[0], "asr_test": cfg.asr_test[0]}
    for subset in (*cfg.asr_valid[1:], *cfg.asr_test[1:]):
        name = extra_split_name(subset)
        if name in splits:
            raise D2VError(f"data.speech.librispeech: subset {subset!r} is listed twice")
        splits[name] = subset
    return splits


def extra_split_name(subset: str) -> str:
    return "asr_" + subset.replace("-", "_")


def subset_folders(speech_raw: Path, name: str) -> list[Path]:
    """The folders holding a LibriSpeech subset or a Libri-light set, each checked to exist."""
    if is_librilight(name):
        if name not in LIBRILIGHT_SETS:
            raise D2VError(f"data.speech.librispeech.asr_train: {name!r} is not one of {sorted(LIBRILIGHT_SETS)}")
        base = speech_raw / LIBRILIGHT_DIR / "librispeech_finetuning"
        folders = [base / part for part in LIBRILIGHT_SETS[name]]
    else:
        folders = [speech_raw / LIBRISPEECH_DIR / name / "LibriSpeech" / name]
    for folder in folders:
        if not folder.is_dir():
            raise D2VError(f"{folder}: {name} missing (run dvc repro download@speech)")
    return folders


def download_librispeech(cfg: LibriSpeechSource, cache_dir: Path, out: Path) -> dict:
    """Fetch and extract every archive the config needs, each verified against its pinned checksum
    (an archive without one is refused: a first download must not be what later ones are checked
    against). -> the digests, for sources.json."""
    from d2v.data.download import download, extract

    md5 = {}
    for subset in archive_subsets(cfg):
        if not cfg.md5.get(subset):
            raise D2VError(f"data.speech.librispeech.md5: no checksum for {subset!r} (pin the md5 openslr "
                           f"publishes in {cfg.base_url}/md5sum.txt)")  # fmt: skip
        cached = cache_dir / "librispeech" / f"{subset}.tar.gz"
        md5[subset] = download(f"{cfg.base_url}/{subset}.tar.gz", cached, cfg.md5[subset], "md5")
        extract(cached, out / LIBRISPEECH_DIR / subset)
    record: dict = {"md5": md5}
    if needs_librilight(cfg):
        if not cfg.librilight_sha256:
            raise D2VError("data.speech.librispeech.librilight_sha256: no checksum for the Libri-light archive")
        cached = cache_dir / "librilight" / LIBRILIGHT_ARCHIVE
        record["librilight_sha256"] = download(cfg.librilight_url, cached, cfg.librilight_sha256, "sha256")
        extract(cached, out / LIBRILIGHT_DIR)
    return record
