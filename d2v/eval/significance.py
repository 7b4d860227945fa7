"""Is the difference between the pretrained and the random-init run bigger than test-set noise?

Paired bootstrap (Efron & Tibshirani's percentile interval, used this way for MT by Koehn 2004):
draw the test set's examples with replacement, score *both* runs on the same draw, and take the
difference; over 1000 draws the 2.5th and 97.5th percentiles bound delta with about 95 %
confidence. Pairing matters: both runs see the same hard examples, so the interval is much
narrower than two independent ones. Several test sets (the GLUE-style average) are each resampled
on every draw and their differences averaged.

What it covers and what it does not: only the sampling noise of a finite test set. Another seed
for fine-tuning can move both scores further; that would need repeated runs, which the demo budget
does not allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from d2v.errors import D2VError
from d2v.eval.metrics import edit_counts, error_rate_from_counts, glue_task_metrics, GlueKind

SubsetScore = Callable[[np.ndarray], float]  # indices into one test set -> the metric on those examples
RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class PairedTestSet:
    """One test set scored by both runs: how to score any subset of its examples for each."""

    size: int
    pretrained: SubsetScore
    random_init: SubsetScore


def paired_bootstrap_interval(
    test_sets: Sequence[PairedTestSet], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """(low, high) percentile interval of mean over test sets of (pretrained - random_init)."""
    if not test_sets:
        raise D2VError("paired bootstrap needs at least one test set")
    if any(t.size < 1 for t in test_sets):
        raise D2VError(f"paired bootstrap: every test set needs examples, sizes {[t.size for t in test_sets]}")
    if not 0.0 < level < 1.0 or resamples < 1:
        raise D2VError(f"paired bootstrap: need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for b in range(resamples):
        per_set = []
        for test_set in test_sets:
            draw = rng.integers(0, test_set.size, size=test_set.size)
            per_set.append(test_set.pretrained(draw) - test_set.random_init(draw))
        deltas[b] = float(np.mean(per_set))
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return float(low), float(high)


def accuracy_scorer(predictions: Sequence[Any], references: Sequence[Any]) -> SubsetScore:
    predicted, gold = (np.asarray(x) for x in _equal_length(predictions, references, "accuracy"))
    hits = predicted == gold
    return lambda draw: float(hits[draw].mean())


def glue_scorer(kind: GlueKind, predictions: Sequence[Any], references: Sequence[Any]) -> SubsetScore:
    predicted, gold = (np.asarray(x) for x in _equal_length(predictions, references, f"GLUE {kind}"))
    return lambda draw: glue_task_metrics(kind, predicted[draw], gold[draw])["score"]


def error_rate_scorer(unit: str, hypotheses: Sequence[str], references: Sequence[str]) -> SubsetScore:
    """Corpus WER (unit "word") or CER ("char") of a subset of utterances, from per-utterance edit counts."""
    if unit not in ("word", "char"):
        raise D2VError(f"error rate unit must be 'word' or 'char', got {unit!r}")
    edits, lengths = edit_counts(references, hypotheses, unit)  # type: ignore[arg-type]
    return lambda draw: error_rate_from_counts(edits[draw], lengths[draw])


def _equal_length(predictions: Sequence[Any], references: Sequence[Any], what: str) -> tuple[list, list]:
    if len(predictions) != len(references) or len(references) == 0:  # also for numpy arrays
        raise D2VError(f"{what}: need equal, non-empty predictions and references, got {len(predictions)} and {len(references)}")
    return list(predictions), list(references)
