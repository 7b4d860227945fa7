"""Golden values for the downstream metrics, each computed by hand in the comment beside it."""

import math

import pytest

from d2v.errors import D2VError
from d2v.eval import metrics as m


def test_accuracy_and_top_k() -> None:
    assert m.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]]
    labels = [2, 1, 0]
    # top-1: argmaxes 1, 0, 2 -> none right; top-2: {1,2} has 2, {0,1} has 1, {2,1} lacks 0 -> 2/3.
    assert m.top_k_accuracy(scores, labels, 1) == 0.0
    assert m.top_k_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert m.top_k_accuracy(scores, labels, 5) == 1.0  # k beyond the class count: every row counts
    assert m.top_k_accuracy([[0.2, 0.8], [0.9, 0.1]], [1, 1], 1) == 0.5  # two classes: argmax


def test_top_k_ties_rank_the_higher_class_first() -> None:
    # scikit-learn's rule: rows tied between classes 0 and 1 put class 1 in the top 1.
    tied = [[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]]
    assert m.top_k_accuracy(tied, [1, 1], 1) == 1.0
    assert m.top_k_accuracy(tied, [0, 0], 1) == 0.0
    assert m.top_k_accuracy(tied, [0, 0], 2) == 1.0
    with pytest.raises(D2VError, match=r"labels must lie in \[0, 3\)"):
        m.top_k_accuracy(tied, [0, 3], 1)


# Confusion matrix by hand: TP=3, FN=2 (five gold positives), TN=4, FP=1 (five gold negatives).
GOLD = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
PRED = [1, 1, 1, 0, 0, 0, 0, 0, 0, 1]


def test_f1_binary_by_hand() -> None:
    assert m.f1_binary(PRED, GOLD) == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))  # 2/3
    assert m.f1_binary([0, 0], [1, 0]) == 0.0


def test_matthews_by_hand() -> None:
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 - 2) / sqrt(4*5*5*6)
    assert m.matthews_corrcoef(PRED, GOLD) == pytest.approx(10 / math.sqrt(600))
    assert m.matthews_corrcoef([1, 1, 1], [0, 1, 0]) == 0.0  # constant predictions
    assert m.matthews_corrcoef([0, 1, 2], [0, 1, 2]) == pytest.approx(1.0)  # multi-class, perfect
    assert m.matthews_corrcoef([0, 1, 0], [1, 1, 1]) == 0.0  # constant labels
    # F1 treats every label but 1 as negative, also a third value: TP=1, FP=1 (the 1 on a 2), FN=0.
    assert m.f1_binary([1, 1, 0], [1, 2, 0]) == pytest.approx(2 / 3)


def test_pearson_by_hand() -> None:
    # dx = (-1, 0, 1), dy = (-7/3, -1/3, 8/3): r = 5 / sqrt(2 * 114/9)
    assert m.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))


@pytest.mark.filterwarnings("error")  # scipy warns (and returns nan) on constant input: never reached
def test_constant_input_correlates_zero_not_nan() -> None:
    assert m.pearson([3, 3, 3], [1, 2, 4]) == 0.0
    assert m.spearman([1, 2, 4], [5, 5, 5]) == 0.0
    assert m.glue_task_metrics("correlation", [2, 2, 2], [1, 2, 3])["score"] == 0.0


def test_spearman_with_ties_uses_average_ranks() -> None:
    assert m.average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4): sum dx*dy = 4.5, sum dx^2 = 4.5, sum dy^2 = 5
    assert m.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # ties on both sides: x ranks (1.5, 1.5, 3.5, 3.5), y ranks (1, 2.5, 2.5, 4):
    # dx = (-1, -1, 1, 1), dy = (-1.5, 0, 0, 1.5): sum dx*dy = 3, sum dx^2 = 4, sum dy^2 = 4.5
    assert m.spearman([1, 1, 2, 2], [1, 2, 2, 3]) == pytest.approx(3 / math.sqrt(4 * 4.5))


def test_word_error_rate_on_known_strings() -> None:
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the cat sit on mat", "hello big world"]
    # 1 substitution + 1 deletion over 6 words, 1 insertion over 2 words: corpus 3 / 8.
    assert m.word_error_rate(refs, hyps) == pytest.approx(3 / 8)
    assert m.word_error_rate(["a b"], ["a b"]) == 0.0


def test_character_error_rate_on_known_strings() -> None:
    # kitten -> sitting is the classic 3 edits; abc -> abd is 1: corpus (3 + 1) / (6 + 3).
    assert m.character_error_rate(["kitten", "abc"], ["sitting", "abd"]) == pytest.approx(4 / 9)
    # flaw -> lawn: delete f, insert n = 2 edits over 4 characters.
    assert m.character_error_rate(["flaw"], ["lawn"]) == pytest.approx(2 / 4)
    # a space is a character: "ab cd" -> "abcd" is 1 deletion over 5; runs of spaces count once.
    assert m.character_error_rate(["ab   cd"], ["abcd"]) == pytest.approx(1 / 5)


def test_empty_hypotheses_and_references_cost_one_edit_per_token() -> None:
    # empty hypothesis: every reference word deleted (3); empty reference: every word inserted (2);
    # both empty: nothing. Corpus WER (3 + 2 + 0) / (3 + 0 + 0).
    refs, hyps = ["a b c", "", ""], ["", "x y", "  "]
    assert m.edit_counts(refs, hyps, "word")[0].tolist() == [3, 2, 0]
    assert m.word_error_rate(refs, hyps) == pytest.approx(5 / 3)
    # characters: "a b c" is 5 characters (spaces count), "x y" 3.
    assert m.edit_counts(refs, hyps, "char")[0].tolist() == [5, 3, 0]
    assert m.character_error_rate(refs, hyps) == pytest.approx(8 / 5)


def test_output_length_ratio_counts_characters_like_cer() -> None:
    # "the  cat" collapses to 7 characters, "a" is 1: hypotheses 3 + 0 characters over 8.
    assert m.output_length_ratio(["the  cat", "a"], ["the", ""]) == pytest.approx(3 / 8)
    assert m.output_length_ratio(["ab"], ["abab"]) == 2.0  # insertions push it above 1
    with pytest.raises(D2VError, match="1 references but 2 hypotheses"):
        m.output_length_ratio(["a"], ["a", "b"])
    with pytest.raises(D2VError, match="references are empty"):
        m.output_length_ratio([""], ["a"])


def test_glue_scores_and_average() -> None:
    mrpc = m.glue_task_metrics(m.glue_task_kind("mrpc"), PRED, GOLD)
    assert mrpc["score"] == pytest.approx((2 / 3 + 0.7) / 2)  # F1 and accuracy averaged
    cola = m.glue_task_metrics(m.glue_task_kind("cola"), PRED, GOLD)
    assert cola["score"] == pytest.approx(10 / math.sqrt(600))
    stsb = m.glue_task_metrics(m.glue_task_kind("stsb"), [1, 2, 2, 3], [1, 3, 2, 4])
    assert stsb["score"] == pytest.approx((stsb["pearson"] + stsb["spearman"]) / 2)
    assert m.glue_task_kind("my_regression", regression=True) == "correlation"
    assert m.glue_task_kind("supersense") == "accuracy"
    assert m.glue_task_kind("STS-B") == "correlation" and m.glue_task_kind("CoLA") == "mcc"
    # MNLI-mismatched is reported but not averaged, as in the paper's table.
    assert m.glue_average({"MNLI": 0.8, "MNLI-mm": 0.0, "SST-2": 0.9}) == pytest.approx(0.85)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(D2VError, match="empty label set"):
        m.accuracy([], [])
    with pytest.raises(D2VError, match="references"):
        m.word_error_rate(["a"], [])
    with pytest.raises(D2VError, match="non-empty reference"):
        m.word_error_rate([""], ["a"])
