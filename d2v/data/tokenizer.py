"""Tokenize stage: sentencepiece on the train corpus, then token streams for pretraining.

data/prepared/text layout:
  spm.model, spm.vocab           unigram, byte fallback, FIXED ids pad=0 unk=1 bos=2 eos=3 <mask>=4
  tokens-<split>.bin             raw little-endian ids (uint16 when vocab <= 65536, else int32):
                                 every corpus line encoded and followed by EOS, concatenated
                                 (streamed in batches, with a progress line: any corpus size);
                                 train then goes on with `task_text_copies` shuffled copies of
                                 the downstream tasks' unlabelled train texts
  offsets-<split>.npy            int64 (n_lines + 1,): line k is tokens[offsets[k]:offsets[k+1]]
  tasks/<task>.csv               copied from the interim directory (raw text; readers encode)
  meta.json                      vocab_size, dtype, special ids, n_tokens per split,
                                 task_text_lines (of tokens-train), tasks
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from d2v.atomic import atomic_dir, atomic_write_json
from d2v.data.shards import RateProgress
from d2v.data.io import held_out_texts, read_csv
from d2v.progress import Progress
from d2v.token_ids import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID
from d2v.errors import D2VError

MASK_PIECE = "<mask>"
_ENCODE_BATCH = 4096


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<i4")


def count_lines(corpus: Path) -> int:
    """Lines as `corpus_lines` yields them (a last line without a newline counts)."""
    with open(corpus, "rb") as f:
        return sum(1 for _ in f)


def corpus_lines(corpus: Path) -> Iterator[str]:
    """The corpus one line at a time; only a newline ends a line (prepare writes one document per line)."""
    with open(corpus, encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line.removesuffix("\n")


def train_tokenizer(corpus: Path, model_path: Path, vocab_size: int, sentences: int, seed: int) -> None:
    """Train on a seeded sample of corpus lines (we sample, not sentencepiece, to stay deterministic).

    Only the sampled lines are held here (sentencepiece keeps its own copy of what it trains on).
    Sentences go in as an iterator and the model comes back as bytes: given file paths, sentencepiece
    records them in the model, and the staging directory's random name made every run's spm.model
    (and so the DVC hash of data/prepared/text) differ."""
    import io

    import sentencepiece as spm

    n_lines = count_lines(corpus)
    lines: Iterable[str] = corpus_lines(corpus)
    if sentences and sentences < n_lines:
        keep = np.sort(np.random.default_rng(seed).choice(n_lines, sentences, replace=False))
        lines = _lines_at(corpus, keep)
    Progress("tokenize text", 0, bar=False).message(
        f"training sentencepiece (vocab {vocab_size}) on {min(sentences or n_lines, n_lines)} of {n_lines} lines")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
            model_type="unigram", byte_fallback=True, character_coverage=0.9995,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            user_defined_symbols=[MASK_PIECE], shuffle_input_sentence=False,
            input_sentence_size=0, num_threads=2, minloglevel=2, hard_vocab_limit=False,
        )  # fmt: skip
    except RuntimeError as exc:
        raise D2VError(f"{corpus}: sentencepiece training failed: {exc}") from exc
    model_path.write_bytes(model.getvalue())


def _lines_at(corpus: Path, sorted_indices: np.ndarray) -> list[str]:
    wanted = iter(sorted_indices.tolist())
    target = next(wanted, None)
    picked = []
    for index, line in enumerate(corpus_lines(corpus)):
        if index == target:
            picked.append(line)
            target = next(wanted, None)
            if target is None:
                break
    return picked


def load_tokenizer(root: str | Path):
    """The sentencepiece processor of a prepared text directory, with its fixed ids checked."""
    import sentencepiece as spm

    path = Path(root) / "spm.model"
    if not path.is_file():
        raise D2VError(f"{path}: tokenizer model not found (run the tokenize stage)")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.piece_to_id(MASK_PIECE))
    if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID):
        raise D2VError(f"{path}: special ids {ids} differ from pad/unk/bos/eos/<mask> = 0/1/2/3/4")
    return sp


def task_train_texts(tasks_dir: Path, tasks: Iterable[str]) -> list[str]:
    """Every text of every task's train split, task by task in row order (both sides of a pair),
    unlabelled, less the held-out ones (`held_out_texts`: a verse paired on both sides), which the
    prepare stage keeps out of the corpus too."""
    rows: list[tuple[str, str, str]] = []
    for task in tasks:
        path = tasks_dir / f"{task}.csv"
        try:
            rows += [(row["split"], row["text_a"], row["text_b"]) for row in read_csv(path)]
        except (OSError, KeyError) as exc:
            raise D2VError(f"{path}: cannot read the task's train texts ({exc!r}; expected the columns "
                           "split, text_a, text_b that the prepare stage writes)") from exc
    held_out = held_out_texts(rows)
    return [text for split, *texts in rows if split == "train" for text in texts if text and text not in held_out]


def task_text_stream(tasks_dir: Path, tasks: Iterable[str], copies: int, seed: int) -> list[str]:
    """`copies` passes over the tasks' train texts, each in its own seeded order, for the end of
    the pretraining stream (task-adaptive pretraining; docs/pipeline.md#splits)."""
    if copies < 0:
        raise D2VError(f"data.text.corpus.task_text_copies: {copies}, expected 0 (none) or a positive count")
    if copies == 0:
        return []
    texts = task_train_texts(tasks_dir, tasks)
    rng = np.random.default_rng(seed)
    return [texts[i] for _ in range(copies) for i in rng.permutation(len(texts))]


def encode_corpus(
    sp, corpus: Path, out_dir: Path, split: str, dtype: np.dtype, extra_lines: Sequence[str] = ()
) -> int:
    """Encode the corpus, then `extra_lines`, batch by batch straight into tokens-<split>.bin and
    offsets-<split>.npy (memory-mapped), so memory holds one batch whatever the corpus size."""
    n_lines = count_lines(corpus) + len(extra_lines)
    # Same bytes as np.save of the finished array: numpy writes the same header for both.
    offsets = np.lib.format.open_memmap(out_dir / f"offsets-{split}.npy", mode="w+", dtype=np.int64,
                                        shape=(n_lines + 1,))  # fmt: skip
    offsets[0] = 0
    n_batches = -(-n_lines // _ENCODE_BATCH)
    progress = RateProgress(f"tokenize text {split}", n_lines, unit="lines", every=_ENCODE_BATCH * max(1, n_batches // 10))
    done = 0
    with open(out_dir / f"tokens-{split}.bin", "wb") as f:
        for batch_lines in _batches(itertools.chain(corpus_lines(corpus), extra_lines), _ENCODE_BATCH):
            batch = sp.encode(batch_lines)
            flat = np.fromiter((t for ids in batch for t in (*ids, EOS_ID)), dtype=dtype)
            f.write(flat.tobytes())
            lengths = np.fromiter((len(ids) + 1 for ids in batch), np.int64, len(batch))
            offsets[done + 1 : done + 1 + len(batch)] = offsets[done] + np.cumsum(lengths)
            done += len(batch)
            progress.update(done)
    progress.close()
    n_tokens = int(offsets[-1])
    offsets.flush()
    del offsets
    return n_tokens


def _batches(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize(
    interim_dir: str | Path, out_dir: str | Path, vocab_size: int, sentences: int, seed: int, task_text_copies: int = 0
) -> dict:
    """The tokenizer is trained on the corpus alone; `task_text_copies` shuffled copies of the
    tasks' train texts (`task_text_stream`) follow the corpus in the train stream only."""
    interim_dir = Path(interim_dir)
    interim_meta = json.loads((interim_dir / "meta.json").read_text(encoding="utf-8"))
    task_texts = task_text_stream(interim_dir / "tasks", interim_meta["tasks"], task_text_copies, seed)
    with atomic_dir(out_dir) as staging:
        train_tokenizer(interim_dir / "corpus-train.txt", staging / "spm.model", vocab_size, sentences, seed)
        sp = load_tokenizer(staging)
        # The human-readable piece list sentencepiece writes beside a model trained from a file.
        pieces = (f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}" for i in range(sp.get_piece_size()))
        (staging / "spm.vocab").write_text("\n".join(pieces) + "\n", encoding="utf-8")
        dtype = token_dtype(sp.get_piece_size())
        extra = {"train": task_texts, "valid": []}
        n_tokens = {s: encode_corpus(sp, interim_dir / f"corpus-{s}.txt", staging, s, dtype, extra[s]) for s in extra}
        shutil.copytree(interim_dir / "tasks", staging / "tasks")
        meta = {
            "vocab_size": sp.get_piece_size(), "dtype": dtype.str, "n_tokens": n_tokens,
            "task_text_lines": len(task_texts),
            "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID, "mask": MASK_ID},
            "tasks": interim_meta["tasks"], "source": interim_meta["source"],
        }  # fmt: skip
        atomic_write_json(staging / "meta.json", meta)
    return meta
