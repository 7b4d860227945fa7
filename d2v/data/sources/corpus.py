"""Your own pretraining corpus: a directory of *.txt files (one document per line) and *.jsonl files
(one JSON object per line, the document in a named field), read as a stream of documents.

Nothing here holds more than one line: a multi-GB corpus passes through in bounded memory. Bad
input stops the stage with the file and line: bytes that are not UTF-8, a JSONL line that is not an
object with a string in the named field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from d2v.data.shards import RateProgress
from d2v.errors import D2VError

CORPUS_SUFFIXES = (".txt", ".jsonl")
MIB = 1 << 20


def corpus_files(root: str | Path) -> list[Path]:
    """The corpus files under `root` (recursively), in a fixed order."""
    root = Path(root)
    if not root.is_dir():
        raise D2VError(f"{root}: data.text.corpus.dir is not a directory (source: dir reads *.txt / *.jsonl under it)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in CORPUS_SUFFIXES)
    if not files:
        raise D2VError(f"{root}: no *.txt or *.jsonl files (data.text.corpus.dir)")
    return files


def normalise(text: str) -> str:
    """One line per document: every whitespace run (line breaks included) becomes one space."""
    return " ".join(text.split())


def text_digest(text: str) -> int:
    """8 bytes standing for a document: dedupe and hold-out sets keep these, not the texts."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def read_documents(files: list[Path], jsonl_field: str, progress: ByteProgress | None = None) -> Iterator[str]:
    """Every non-empty document of `files`, normalised, in file order."""
    for path in files:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                if progress is not None:
                    progress.add(len(raw))
                text = _decode(raw, path, line_no)
                if path.suffix == ".jsonl":
                    text = _jsonl_text(text, jsonl_field, path, line_no)
                text = normalise(text)
                if text:
                    yield text


def _decode(raw: bytes, path: Path, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise D2VError(f"{path}:{line_no}: not UTF-8 ({exc.reason} at byte {exc.start} of the line); "
                       "convert the file (iconv -t UTF-8) or remove it") from None  # fmt: skip


def _jsonl_text(line: str, field: str, path: Path, line_no: int) -> str:
    if not line.strip():
        return ""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise D2VError(f"{path}:{line_no}: not a JSON line ({exc.msg})") from None
    value = record.get(field) if isinstance(record, dict) else None
    if not isinstance(value, str):
        raise D2VError(f"{path}:{line_no}: no string field {field!r} (data.text.corpus.jsonl_field)")
    return value


class ByteProgress:
    """Bytes read, shown as MiB with rate and ETA (RateProgress counts whole units)."""

    def __init__(self, label: str, total_bytes: int) -> None:
        self.total = max(1, -(-total_bytes // MIB))
        self.progress = RateProgress(label, self.total, unit="MiB")
        self.read = self.reported = 0

    def add(self, n: int) -> None:
        self.read += n
        for mib in range(self.reported + 1, min(self.read // MIB, self.total) + 1):
            self.progress.update(mib)
            self.reported = mib

    def close(self, summary: str = "") -> None:
        if self.reported < self.total:
            self.progress.update(self.total)
        self.progress.close()
        if summary:
            self.progress.progress.message(summary)


def describe_corpus(root: str | Path) -> dict:
    """What the download stage records of a user corpus: its files' names and sizes, hashed, so that
    DVC sees a changed corpus (prepare reads the bytes)."""
    files = corpus_files(root)
    listing = "\n".join(f"{p.relative_to(root)}\t{p.stat().st_size}" for p in files)
    return {"source": "dir", "dir": str(root), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "listing_sha256": hashlib.sha256(listing.encode("utf-8")).hexdigest()}  # fmt: skip
