"""Is the difference between the pretrained and the random-init run bigger than test-set noise?

Paired bootstrap (Efron & Tibshirani's percentile interval, used this way for MT by Koehn 2004):
draw the test set's examples with replacement, score *both* runs on the same draw, and take the
difference; over 1000 draws the 2.5th and 97.5th percentiles bound delta with about 95 %
confidence. The resampling and the percentiles are scipy.stats.bootstrap's (method="percentile",
a fixed seed, so intervals are reproducible). Pairing matters: both runs see the same hard examples, so the interval is much
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
import scipy.stats

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
    """(low, high) percentile interval of mean over test sets of (pretrained - random_init).

    scipy.stats.bootstrap draws the resamples and takes the percentiles. What it resamples are the
    example *indices* of each test set (one sample per test set, each drawn independently); the
    statistic scores both runs on the same drawn indices, which is what pairs them. Resampling
    indices rather than per-example values is what lets corpus-level scores (WER = summed edits /
    summed lengths, F1, MCC, correlations) be bootstrapped exactly: none of them is a mean of
    per-example numbers.
    """
    if not test_sets:
        raise D2VError("paired bootstrap needs at least one test set")
    if any(t.size < 1 for t in test_sets):
        raise D2VError(f"paired bootstrap: every test set needs examples, sizes {[t.size for t in test_sets]}")
    if not 0.0 < level < 1.0 or resamples < 1:
        raise D2VError(f"paired bootstrap: need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    # scipy wants >= 2 observations per sample. A one-example set can only ever redraw itself; as
    # [0, 0] every draw is that example twice, which scores like the example once.
    indices = tuple(np.arange(t.size) if t.size > 1 else np.zeros(2, dtype=np.int64) for t in test_sets)

    def mean_delta(*draws: np.ndarray) -> float:
        return float(np.mean([t.pretrained(d) - t.random_init(d) for t, d in zip(test_sets, draws)]))

    result = scipy.stats.bootstrap(
        indices, mean_delta, n_resamples=resamples, vectorized=False, paired=False,
        confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def accuracy_scorer(predictions: Sequence[Any], references: Sequence[Any]) -> SubsetScore:
    predicted, gold = (np.asarray(x) for x in _equal_length(predictions, references, "accuracy"))
    hits = predicted == gold
    return lambda draw: float(hits[draw].mean())


def glue_scorer(kind: GlueKind, predictions: Sequence[Any], references: Sequence[Any]) -> SubsetScore:
    if kind == "accuracy":  # a mean of per-example hits: no need for a library call per draw
        return accuracy_scorer(predictions, references)
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
