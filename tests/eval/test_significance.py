from __future__ import annotations

import numpy as np
import pytest

from d2v.errors import D2VError
from d2v.eval.metrics import character_error_rate, f1_binary, word_error_rate
from d2v.eval.significance import (
    PairedTestSet,
    accuracy_scorer,
    error_rate_scorer,
    glue_scorer,
    paired_bootstrap_interval,
)


def _pair(pretrained: list[int], random_init: list[int], labels: list[int]) -> PairedTestSet:
    return PairedTestSet(len(labels), accuracy_scorer(pretrained, labels), accuracy_scorer(random_init, labels))


def test_identical_runs_give_a_zero_width_interval() -> None:
    labels = [0, 1] * 50
    predictions = [0] * 100
    assert paired_bootstrap_interval([_pair(predictions, predictions, labels)]) == (0.0, 0.0)


def test_interval_brackets_the_delta_and_narrows_with_more_examples() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 1600):
        labels = rng.integers(0, 2, n).tolist()
        # pretrained right on ~70 % of examples, random init on ~60 %, independently
        ours = [y if rng.random() < 0.7 else 1 - y for y in labels]
        theirs = [y if rng.random() < 0.6 else 1 - y for y in labels]
        delta = np.mean(np.equal(ours, labels)) - np.mean(np.equal(theirs, labels))
        low, high = paired_bootstrap_interval([_pair(ours, theirs, labels)])
        assert low < delta < high
        widths.append(high - low)
    # the percentile interval shrinks like 1/sqrt(n): 16x the examples, about a quarter of the width
    assert 0.15 < widths[1] / widths[0] < 0.4


def test_pairing_makes_a_consistent_small_gain_significant() -> None:
    """Both runs share every hard example; pretrained also gets 6 more of 400 right. Unpaired 95 %
    intervals of two accuracies near 0.5 would overlap widely; the paired one excludes 0."""
    labels = [i % 2 for i in range(400)]
    theirs = [y if i % 2 == 0 else 1 - y for i, y in enumerate(labels)]  # 50 %
    ours = list(theirs)
    for i in (1, 3, 5, 7, 9, 11):
        ours[i] = labels[i]
    low, high = paired_bootstrap_interval([_pair(ours, theirs, labels)])
    assert 0.0 < low < 6 / 400 < high


def test_several_test_sets_average_their_deltas() -> None:
    labels = [i % 2 for i in range(300)]
    perfect, wrong = labels, [1 - y for y in labels]
    gain = _pair(perfect, wrong, labels)  # delta +1 on every draw
    none = _pair(perfect, perfect, labels)  # delta 0 on every draw
    assert paired_bootstrap_interval([gain, none]) == pytest.approx((0.5, 0.5))


def test_same_seed_same_interval() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 150).tolist()
    ours, theirs = rng.integers(0, 2, 150).tolist(), rng.integers(0, 2, 150).tolist()
    pair = _pair(ours, theirs, labels)
    assert paired_bootstrap_interval([pair], seed=3) == paired_bootstrap_interval([pair], seed=3)


def test_error_rate_scorer_matches_the_corpus_metrics_on_the_full_set() -> None:
    references = ["the cat sat", "a dog", "hello world again"]
    hypotheses = ["the cat sit", "", "hello word again now"]
    everything = np.arange(3)
    assert error_rate_scorer("word", hypotheses, references)(everything) == word_error_rate(references, hypotheses)
    assert error_rate_scorer("char", hypotheses, references)(everything) == character_error_rate(references, hypotheses)
    # one utterance drawn twice counts twice: 2 x (1 edit) / 2 x (3 words)
    assert error_rate_scorer("word", hypotheses, references)(np.array([0, 0])) == pytest.approx(1 / 3)


def test_glue_scorer_uses_the_task_metric() -> None:
    predictions, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    score = glue_scorer("f1_accuracy", predictions, labels)(np.arange(5))
    assert score == pytest.approx((f1_binary(predictions, labels) + 3 / 5) / 2)
    # numpy arrays are as good as lists
    assert glue_scorer("f1_accuracy", np.array(predictions), np.array(labels))(np.arange(5)) == score
    assert accuracy_scorer(np.array(predictions), np.array(labels))(np.arange(5)) == pytest.approx(3 / 5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_bootstrap_interval([]), "at least one test set"),
        (lambda: accuracy_scorer([0, 1], [0]), "equal, non-empty"),
        (lambda: error_rate_scorer("phone", ["a"], ["a"]), "'word' or 'char'"),
        (lambda: paired_bootstrap_interval([PairedTestSet(0, len, len)]), "every test set needs examples"),
    ],
)
def test_bad_input_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(D2VError, match=message):
        call()


def test_a_one_example_test_set_gives_its_delta() -> None:
    # scipy's bootstrap needs two observations; a single example can only redraw itself.
    assert paired_bootstrap_interval([_pair([1], [0], [1])]) == (1.0, 1.0)


def test_corpus_wer_delta_is_resampled_per_utterance() -> None:
    references = ["a b c d", "e f", "g h i", "j"] * 10
    ours = error_rate_scorer("word", ["a b c d", "e", "g h i", "j"] * 10, references)  # 1 of 10 words wrong
    theirs = error_rate_scorer("word", ["a b", "e", "g h i", "x"] * 10, references)  # 4 of 10 wrong
    low, high = paired_bootstrap_interval([PairedTestSet(40, ours, theirs)])
    # WER delta is -0.3 on the full set; every draw is a weighted mix of the four utterance kinds,
    # so the delta stays strictly between -1 and 0 while the interval brackets -0.3.
    assert -1.0 < low < -0.3 < high < 0.0


def test_another_seed_draws_another_interval() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200).tolist()
    ours, theirs = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    # MCC takes far more distinct values than an accuracy on 200 examples, so percentiles differ
    pair = PairedTestSet(200, glue_scorer("mcc", ours, labels), glue_scorer("mcc", theirs, labels))
    assert paired_bootstrap_interval([pair], seed=0) != paired_bootstrap_interval([pair], seed=1)
