"""Text prepare: sources -> data/interim/text (pretraining corpus + downstream task manifests).

Layout:
  corpus-train.txt, corpus-valid.txt   one document per line, UTF-8 (tokenizer + pretraining input)
  tasks/<task>.csv                     id, split, text_a, text_b ('' for single sentences), label
  meta.json                            tasks {name: {num_classes, pair, label_names}}, held_out count

Tasks come from `source` (embedded or GLUE), the corpus from `corpus.source` (embedded: WordNet,
fortunes, KJV; dir: your *.txt / *.jsonl files, streamed, deduplicated by hash). Leakage guard:
every text used by a valid or test example of a downstream task (a WordNet gloss, a KJV verse on
either side of a pair) is removed from the pretraining corpus and tokenizer input.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TextIO

import numpy as np

from d2v.data.config import TextConfig
from d2v.atomic import atomic_dir, atomic_write_json
from d2v.data.io import assign_split, held_out_texts, write_csv
from d2v.data.sources import text as src
from d2v.data.sources.corpus import ByteProgress, corpus_files, read_documents, text_digest
from d2v.data.sources.glue import read_glue_tasks
from d2v.errors import D2VError

TASK_COLUMNS = ("id", "split", "text_a", "text_b", "label")
Example = tuple[str, str, str, str, float | int]  # id, split, text_a, text_b, label


def vader_sdist_path(cfg: TextConfig, raw_dir: str | Path) -> Path:
    return Path(raw_dir) / "text" / f"vaderSentiment-{cfg.vader_version}.tar.gz"


def prepare_text(cfg: TextConfig, seed: int, raw_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    embedded_corpus = cfg.corpus.source == "embedded"
    # WordNet and the KJV feed the embedded tasks and corpus only (Debian packages a user may lack).
    glosses = src.read_wordnet_glosses(cfg.wordnet_dir) if cfg.source == "embedded" or embedded_corpus else []
    kjv = src.read_kjv() if cfg.source == "embedded" or embedded_corpus else {}
    if cfg.source == "embedded":
        tasks, meta = _embedded_tasks(cfg, seed, raw_dir, glosses, kjv)
    else:
        tasks, meta = read_glue_tasks(cfg.glue, seed, Path(raw_dir) / "text" / "glue")
    held_out = held_out_texts((ex[1], ex[2], ex[3]) for rows in tasks.values() for ex in rows)
    with atomic_dir(out_dir) as staging:
        if embedded_corpus:
            counts = _write_embedded_corpus(staging, cfg, seed, held_out, glosses, kjv)
        else:
            counts = _write_dir_corpus(staging, cfg, seed, {text_digest(t) for t in held_out})
        (staging / "tasks").mkdir()
        for name, rows in tasks.items():
            write_csv(staging / "tasks" / f"{name}.csv", TASK_COLUMNS, rows)
            counts[name] = len(rows)
        record = {"source": cfg.source, "tasks": meta, "held_out_texts": len(held_out), "counts": counts}
        if not embedded_corpus:  # the embedded default's meta.json stays as it always was
            record["corpus"] = {"source": cfg.corpus.source, "dir": cfg.corpus.dir}
        atomic_write_json(staging / "meta.json", record)
    return counts


def _write_embedded_corpus(staging: Path, cfg: TextConfig, seed: int, held_out: set[str], glosses, kjv) -> dict[str, int]:
    corpus = [g.text for g in glosses] + src.read_fortunes(cfg.fortunes_dir) + list(kjv.values())
    corpus = sorted({line for line in corpus if line and line not in held_out})
    random.Random(seed).shuffle(corpus)
    corpus = corpus[: cfg.corpus_max_lines or len(corpus)]
    counts = {}
    for split in ("train", "valid"):
        lines = [t for t in corpus if _corpus_split(t, seed, cfg) == split]
        (staging / f"corpus-{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[f"corpus_{split}"] = len(lines)
    return counts


def _write_dir_corpus(staging: Path, cfg: TextConfig, seed: int, held_out: set[int]) -> dict[str, int]:
    """Stream the user's documents into the two corpus files: first copy of each text only (by an
    8-byte hash, so memory grows with distinct documents, not their size), held-out texts dropped,
    split by a stable hash of the text. corpus_max_lines keeps the first lines in file order."""
    files = corpus_files(cfg.corpus.dir)
    progress = ByteProgress(f"prepare text corpus {cfg.corpus.dir}", sum(p.stat().st_size for p in files))
    seen: set[int] = set()
    counts = {"corpus_train": 0, "corpus_valid": 0}
    with open(staging / "corpus-train.txt", "w", encoding="utf-8", newline="\n") as train, \
         open(staging / "corpus-valid.txt", "w", encoding="utf-8", newline="\n") as valid:  # fmt: skip
        outputs: dict[str, TextIO] = {"train": train, "valid": valid}
        for text in read_documents(files, cfg.corpus.jsonl_field, progress):
            digest = text_digest(text)
            if digest in seen or digest in held_out:
                continue
            seen.add(digest)
            split = _corpus_split(text, seed, cfg)
            outputs[split].write(text + "\n")
            counts[f"corpus_{split}"] += 1
            if cfg.corpus_max_lines and len(seen) >= cfg.corpus_max_lines:
                break
    progress.close(f"{counts['corpus_train']} train + {counts['corpus_valid']} valid documents from {len(files)} files")
    return counts


def _corpus_split(text: str, seed: int, cfg: TextConfig) -> str:
    return "valid" if assign_split(text, seed, cfg.corpus_valid_fraction) == "valid" else "train"


def _embedded_tasks(cfg: TextConfig, seed: int, raw_dir, glosses, kjv) -> tuple[dict, dict]:
    sdist = vader_sdist_path(cfg, raw_dir)
    if not sdist.is_file():
        raise D2VError(f"{sdist}: missing; run the download stage (dvc repro download@text)")
    tasks = {
        "sentiment": _dedupe(_sentiment(src.read_vader_movie_snippets(sdist), cfg, seed)),
        "paraphrase": _dedupe(_paraphrase(kjv, src.read_web(), cfg, seed)),
        "supersense": _dedupe(_supersense(glosses, cfg, seed)),
    }
    meta = {
        "sentiment": {"num_classes": 2, "pair": False, "label_names": ["negative", "positive"]},
        "paraphrase": {"num_classes": 2, "pair": True, "label_names": ["different", "paraphrase"]},
        "supersense": {"num_classes": len(src.WORDNET_LEXNAMES), "pair": False,
                       "label_names": list(src.WORDNET_LEXNAMES)},
    }  # fmt: skip
    return tasks, meta


def _subsample(items: list, size: int, seed: int) -> list:
    order = np.random.default_rng(seed).permutation(len(items))[: size or len(items)]
    return [items[i] for i in sorted(order)]


def _dedupe(rows: list[Example]) -> list[Example]:
    """Keep the first example of each (text_a, text_b): repeated texts (KJV formulae, shared
    glosses) would otherwise sit on both sides of a split, sometimes with different labels."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for row in rows:
        if (row[2], row[3]) not in seen:
            seen.add((row[2], row[3]))
            kept.append(row)
    return kept


def _split(key: str, cfg: TextConfig, seed: int) -> str:
    """Splits are keyed by the text itself, so equal texts always land in the same split."""
    return assign_split(key, seed, cfg.valid_fraction, cfg.test_fraction)


def _sentiment(snippets: list[tuple[str, str, float]], cfg: TextConfig, seed: int) -> list[Example]:
    usable = [(i, t, s) for i, t, s in snippets if s != 0 and t]  # neutral snippets have no label
    return [(i, _split(t, cfg, seed), t, "", int(s > 0)) for i, t, s in _subsample(usable, cfg.task_size, seed)]


def _paraphrase(kjv: dict, web: dict, cfg: TextConfig, seed: int) -> list[Example]:
    """Positives: the same verse in KJV and WEB. Negatives: the KJV verse with a nearby WEB verse."""
    keys = sorted(set(kjv) & set(web))
    anchors = _subsample(keys, (cfg.task_size + 1) // 2, seed)
    rng = random.Random(seed)
    rows: list[Example] = []
    for book, chapter, verse in anchors:
        anchor_id = f"{book.replace(' ', '')}.{chapter}.{verse}"
        split = _split(kjv[(book, chapter, verse)], cfg, seed)
        rows.append((f"{anchor_id}+", split, kjv[(book, chapter, verse)], web[(book, chapter, verse)], 1))
        offsets = [d for d in range(-cfg.paraphrase_negative_window, cfg.paraphrase_negative_window + 1)
                   if d and (book, chapter, verse + d) in web]  # fmt: skip
        if offsets:
            other = (book, chapter, verse + rng.choice(offsets))
            rows.append((f"{anchor_id}-", split, kjv[(book, chapter, verse)], web[other], 0))
    return rows


def _supersense(glosses: list, cfg: TextConfig, seed: int) -> list[Example]:
    return [(g.key, _split(g.text, cfg, seed), g.text, "", g.lexfile) for g in _subsample(glosses, cfg.task_size, seed)]
