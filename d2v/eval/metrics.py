"""Downstream metrics as the benchmarks report them: pure functions on numbers, no torch.

Classification: accuracy, top-k accuracy, binary F1 (positive class 1), Matthews correlation.
Regression: Pearson and Spearman (ties get average ranks). Speech: corpus-level word and character
error rate (total Levenshtein edits / total reference length). GLUE: each task's primary score and
the unweighted average, as the data2vec paper's table reports them.

The numbers come from the libraries everyone checks against: scikit-learn (accuracy, top-k, F1,
MCC), scipy.stats (Pearson, Spearman, ranks) and jiwer (word/character edits). What stays here is
input checking, the GLUE scoring rules and two conventions the libraries leave open: a constant
side scores correlation 0.0 (not nan), and an empty reference or hypothesis costs one edit per
token of the other side.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import jiwer
import numpy as np
import scipy.stats
from numpy.typing import ArrayLike
from sklearn import metrics as sklearn_metrics

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
    return float(sklearn_metrics.accuracy_score(gold, pred))


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (k >= classes counts all right).

    Ties follow scikit-learn: among equal scores the higher class index ranks first.
    """
    s, gold = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if s.ndim != 2 or s.shape[0] != gold.shape[0]:
        raise D2VError(f"scores {s.shape} must be (N, classes) for {gold.shape[0]} labels")
    if gold.size == 0:
        raise D2VError("cannot score an empty label set")
    classes = s.shape[1]
    if np.any((gold < 0) | (gold >= classes)):
        raise D2VError(f"labels must lie in [0, {classes}) for scores with {classes} classes, got {sorted(set(gold.tolist()))[:10]}")
    if k >= classes:
        return 1.0  # scikit-learn agrees, but warns that the score is meaningless
    if classes == 2:  # k == 1; scikit-learn wants one score column for two classes, so argmax
        return accuracy(np.argmax(s, axis=1), gold)
    return float(sklearn_metrics.top_k_accuracy_score(gold, s, k=k, labels=np.arange(classes)))


def f1_binary(predictions: ArrayLike, labels: ArrayLike) -> float:
    """F1 of the positive class 1 (GLUE's MRPC/QQP F1); 0.0 when there is no true or predicted 1."""
    pred, gold = _as_labels(predictions, labels)
    # Anything but 1 is the negative class, so compare as booleans (scikit-learn's binary F1 would
    # reject a third label value).
    return float(sklearn_metrics.f1_score(gold == 1, pred == 1, zero_division=0.0))


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004; equals the binary formula for 2 classes).

    0.0 when either side is constant (the denominator vanishes), as scikit-learn defines it.
    """
    pred, gold = _as_labels(predictions, labels)
    return float(sklearn_metrics.matthews_corrcoef(gold, pred))


def _as_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise D2VError(f"correlation needs two equal-length 1-D arrays of >= 2 values, got {a.shape}, {b.shape}")
    return a, b


def _constant(*arrays: np.ndarray) -> bool:
    return any(np.all(a == a[0]) for a in arrays)


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation; 0.0 when either side is constant (scipy would return nan and warn)."""
    a, b = _as_pair(x, y)
    return 0.0 if _constant(a, b) else float(scipy.stats.pearsonr(a, b).statistic)


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span ([10, 20, 20] -> [1, 2.5, 2.5])."""
    return scipy.stats.rankdata(np.asarray(values, dtype=np.float64), method="average")


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman correlation = Pearson of the average ranks (exact with ties); 0.0 when a side is constant."""
    a, b = _as_pair(x, y)
    return 0.0 if _constant(a, b) else float(scipy.stats.spearmanr(a, b).statistic)


def _normalise(text: str) -> str:
    # Words split on whitespace; characters with runs of whitespace collapsed to one kept space.
    return " ".join(text.split())


def _tokens(text: str, unit: ErrorUnit) -> Sequence[str]:
    return text.split() if unit == "word" else list(_normalise(text))


def _edits(reference: str, hypothesis: str, unit: ErrorUnit) -> int:
    """Substitutions + deletions + insertions between one reference and one hypothesis (jiwer).

    Empty sides are scored here, not by jiwer: an empty reference costs one insertion per
    hypothesis token, an empty hypothesis one deletion per reference token.
    """
    ref, hyp = _normalise(reference), _normalise(hypothesis)
    if not ref or not hyp:
        return len(_tokens(ref or hyp, unit))
    out = jiwer.process_words(ref, hyp) if unit == "word" else jiwer.process_characters(ref, hyp)
    return out.substitutions + out.deletions + out.insertions


def edit_counts(references: Sequence[str], hypotheses: Sequence[str], unit: ErrorUnit) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance: edits between reference and hypothesis, and reference length, in words or characters.

    Corpus error rate = edits.sum() / lengths.sum() (jiwer's corpus WER/CER); kept per utterance so
    that subsets (bootstrap) are cheap.
    """
    if len(references) != len(hypotheses):
        raise D2VError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = np.array([_edits(r, h, unit) for r, h in zip(references, hypotheses)], dtype=np.int64)
    lengths = np.array([len(_tokens(r, unit)) for r in references], dtype=np.int64)
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
