"""Downstream metrics as the benchmarks report them: pure functions on numbers, no torch.

Classification: accuracy, top-k accuracy, binary F1 (positive class 1), Matthews correlation.
Regression: Pearson and Spearman (ties get average ranks). Speech: corpus-level word and character
error rate (total Levenshtein edits / total reference length). GLUE: each task's primary score and
the unweighted average, as the data2vec paper's table reports them.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from d2v.errors import D2VError

GlueKind = Literal["accuracy", "f1_accuracy", "correlation", "mcc"]
ErrorUnit = Literal["word", "char"]

# GLUE's official scoring: a task with two metrics scores their mean (MRPC/QQP: F1 and accuracy,
# STS-B: Pearson and Spearman). MNLI-mismatched is reported but, as in the paper's "Avg" column,
# not averaged (the average uses MNLI-matched).
GLUE_TASK_KINDS: dict[str, GlueKind] = {
    "cola": "mcc",
    "sst2": "accuracy",
    "mrpc": "f1_accuracy",
    # The embedded stand-ins score like the GLUE task they imitate.
    "sentiment": "accuracy",  # SST-2-like
    "paraphrase": "f1_accuracy",  # MRPC-like
    "qqp": "f1_accuracy",
    "stsb": "correlation",
    "mnli": "accuracy",
    "mnlimm": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
    "wnli": "accuracy",
}
NOT_AVERAGED = frozenset({"mnlimm"})


def glue_task_key(task: str) -> str:
    """Task names as data sources spell them ("SST-2", "sst2", "STS_B") -> one key ("sst2", "stsb")."""
    return "".join(ch for ch in task.lower() if ch.isalnum())


def _as_labels(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = np.asarray(predictions), np.asarray(labels)
    if pred.shape != gold.shape or pred.ndim != 1:
        raise D2VError(f"predictions {pred.shape} and labels {gold.shape} must be equal-length 1-D")
    if gold.size == 0:
        raise D2VError("cannot score an empty label set")
    return pred, gold


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    pred, gold = _as_labels(predictions, labels)
    return float(np.mean(pred == gold))


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (k >= classes counts all right)."""
    s, gold = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if s.ndim != 2 or s.shape[0] != gold.shape[0]:
        raise D2VError(f"scores {s.shape} must be (N, classes) for {gold.shape[0]} labels")
    if gold.size == 0:
        raise D2VError("cannot score an empty label set")
    k = min(k, s.shape[1])
    # Ties are broken by class order (stable sort), the same way torch.topk does on CPU in practice.
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == gold[:, None], axis=1)))


def _binary_counts(pred: np.ndarray, gold: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum((pred == 1) & (gold == 1)))
    tn = int(np.sum((pred != 1) & (gold != 1)))
    fp = int(np.sum((pred == 1) & (gold != 1)))
    fn = int(np.sum((pred != 1) & (gold == 1)))
    return tp, tn, fp, fn


def f1_binary(predictions: ArrayLike, labels: ArrayLike) -> float:
    """F1 of the positive class 1 (GLUE's MRPC/QQP F1); 0.0 when there is no true or predicted 1."""
    tp, _, fp, fn = _binary_counts(*_as_labels(predictions, labels))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004; equals the binary formula for 2 classes).

    0.0 when either side is constant (the denominator vanishes), as scikit-learn does.
    """
    pred, gold = _as_labels(predictions, labels)
    classes = np.union1d(pred, gold)
    conf = np.array([[np.sum((gold == a) & (pred == p)) for p in classes] for a in classes], float)
    t, p = conf.sum(axis=1), conf.sum(axis=0)  # true and predicted counts per class
    n, correct = conf.sum(), np.trace(conf)
    numerator = correct * n - t @ p
    denominator = np.sqrt((n * n - p @ p) * (n * n - t @ t))
    return float(numerator / denominator) if denominator > 0 else 0.0


def _as_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise D2VError(f"correlation needs two equal-length 1-D arrays of >= 2 values, got {a.shape}, {b.shape}")
    return a, b


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation; 0.0 when either side is constant."""
    a, b = _as_pair(x, y)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else 0.0


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span ([10, 20, 20] -> [1, 2.5, 2.5])."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(v.size, dtype=np.float64)
    sorted_v = v[order]
    start = 0
    while start < v.size:
        end = start
        while end + 1 < v.size and sorted_v[end + 1] == sorted_v[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman correlation = Pearson of the average ranks (exact with ties)."""
    a, b = _as_pair(x, y)
    return pearson(average_ranks(a), average_ranks(b))


def levenshtein(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Edit distance (substitutions, insertions, deletions, each cost 1) between two token sequences."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_token in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_token in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_token != hyp_token),  # substitution or match
            )
        previous = current
    return previous[-1]


def _tokens(text: str, unit: ErrorUnit) -> Sequence[str]:
    # Words split on whitespace; characters with runs of whitespace collapsed to one kept space.
    return text.split() if unit == "word" else list(" ".join(text.split()))


def edit_counts(references: Sequence[str], hypotheses: Sequence[str], unit: ErrorUnit) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance: edits between reference and hypothesis, and reference length, in words or characters.

    Corpus error rate = edits.sum() / lengths.sum(); kept per utterance so subsets (bootstrap) are cheap.
    """
    if len(references) != len(hypotheses):
        raise D2VError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(_tokens(r, unit), _tokens(h, unit)) for r, h in zip(references, hypotheses)]
    edits = np.array([levenshtein(r, h) for r, h in pairs], dtype=np.int64)
    lengths = np.array([len(r) for r, _ in pairs], dtype=np.int64)
    return edits, lengths


def error_rate_from_counts(edits: np.ndarray, lengths: np.ndarray) -> float:
    total = int(lengths.sum())
    if total == 0:
        raise D2VError("error rate needs at least one non-empty reference")
    return int(edits.sum()) / total


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: total word edits / total reference words (words split on whitespace)."""
    return error_rate_from_counts(*edit_counts(references, hypotheses, "word"))


def character_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER: total character edits / total reference characters (spaces collapsed, kept)."""
    return error_rate_from_counts(*edit_counts(references, hypotheses, "char"))


def output_length_ratio(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Characters emitted / reference characters over a corpus (units as in CER).

    Near 0 means near-empty transcripts: such a model scores a WER of about 100 % without
    recognising anything, which can look better than a model that emits too much.
    """
    if len(references) != len(hypotheses):
        raise D2VError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    reference_chars = sum(len(_tokens(r, "char")) for r in references)
    if reference_chars == 0:
        raise D2VError("output length ratio: the references are empty")
    return sum(len(_tokens(h, "char")) for h in hypotheses) / reference_chars


def glue_task_kind(task: str, regression: bool = False) -> GlueKind:
    """The scoring rule of a GLUE task; other tasks score accuracy, or correlation when regression."""
    return GLUE_TASK_KINDS.get(glue_task_key(task), "correlation" if regression else "accuracy")


def glue_task_metrics(kind: GlueKind, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Every metric GLUE reports for a task of this kind, plus `score` (its primary number)."""
    if kind == "correlation":
        result = {"pearson": pearson(predictions, labels), "spearman": spearman(predictions, labels)}
        result["score"] = (result["pearson"] + result["spearman"]) / 2
    elif kind == "mcc":
        result = {"mcc": matthews_corrcoef(predictions, labels), "accuracy": accuracy(predictions, labels)}
        result["score"] = result["mcc"]
    elif kind == "f1_accuracy":
        result = {"f1": f1_binary(predictions, labels), "accuracy": accuracy(predictions, labels)}
        result["score"] = (result["f1"] + result["accuracy"]) / 2
    elif kind == "accuracy":
        result = {"accuracy": accuracy(predictions, labels)}
        result["score"] = result["accuracy"]
    else:
        raise D2VError(f"unknown GLUE metric kind {kind!r} (expected one of {list(GLUE_TASK_KINDS.values())})")
    return result


def glue_average(task_scores: Mapping[str, float]) -> float:
    """Unweighted mean of the task scores, leaving out MNLI-mismatched as the paper's table does."""
    scores = [s for task, s in task_scores.items() if glue_task_key(task) not in NOT_AVERAGED]
    if not scores:
        raise D2VError("GLUE average needs at least one task score")
    return float(np.mean(scores))
