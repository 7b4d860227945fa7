"""File formats and deterministic helpers shared by the prepare stages.

Every product is written atomically (d2v.atomic), so an interrupted or failed stage never leaves a
half-written file (or directory) where the next stage would read it.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from d2v.atomic import atomic_open


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:  # a file object: np.save would append ".npy" to a bare name
        np.save(f, array)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def held_out_texts(rows: Iterable[tuple[str, str, str]]) -> set[str]:
    """(split, text_a, text_b) rows of the text task tables -> every text of a valid or test row.
    These stay out of pretraining: the corpus, the tokenizer's input and the tasks' train-text stream."""
    held_out: set[str] = set()
    for split, text_a, text_b in rows:
        if split != "train":
            held_out.add(text_a)
            if text_b:
                held_out.add(text_b)
    return held_out


def first_repeat(keyed: Iterable[tuple[str, str]]) -> tuple[str, str, str] | None:
    """The first key seen twice in (key, where) pairs, as (key, where first, where again); None if
    every key is unique. Prepare stages use it for item ids: one id twice would be one manifest row twice."""
    seen: dict[str, str] = {}
    for key, where in keyed:
        if key in seen:
            return key, seen[key], where
        seen[key] = where
    return None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def stable_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key): split assignment that does not depend on order."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(key: str, seed: int, valid_fraction: float, test_fraction: float = 0.0) -> str:
    u = stable_fraction(key, seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"
