"""The evaluation record's verdicts (d2v.eval.record): against random init, against the input baseline."""

from __future__ import annotations

import pytest

from d2v.eval.record import BaselineRecord


@pytest.mark.parametrize(
    ("metric", "pretrained", "random_init", "verdict"),
    [
        ("wer", 1.0, 1.05, "inconclusive (both >= 100 %)"),  # empty output vs. garbage: no winner
        ("asr_real_cer", 1.2, 1.0, "inconclusive (both >= 100 %)"),
        ("cer", 1.0, 0.76, "no"),
        ("wer", 0.9, 1.3, "yes"),
        ("top1", 0.0, 0.0, "no"),
    ],
)
def test_verdict_is_inconclusive_when_both_error_rates_reach_100_percent(
    metric: str, pretrained: float, random_init: float, verdict: str
) -> None:
    higher = metric == "top1"
    record = BaselineRecord(metric, metric, higher, pretrained, random_init, pretrained - random_init, 10, 5, 0.0)
    assert record.verdict == verdict
    assert record.pretraining_helps == (verdict == "yes")


@pytest.mark.parametrize(
    ("pretrained", "random_init", "ratios", "verdict"),
    [
        # The Asterisk case: a near-silent pretrained model "beats" one full of insertions on WER.
        (0.9997, 1.275, (0.04, 1.3), "inconclusive (the better run's transcripts are near-empty: 4% of the reference length)"),
        (0.60, 0.80, (0.9, 1.1), "yes"),  # a real win keeps its verdict
        (0.80, 0.60, (0.1, 0.9), "no"),  # the near-empty run losing is still a loss
        (0.60, 0.80, (0.5, 1.1), "yes"),  # half the reference length is enough
        (0.60, 0.80, None, "yes"),  # records without ratios (older files) are judged as before
    ],
)
def test_a_win_by_near_empty_transcripts_is_inconclusive(
    pretrained: float, random_init: float, ratios: tuple[float, float] | None, verdict: str
) -> None:
    ours, theirs = ratios if ratios is not None else (None, None)
    record = BaselineRecord(
        "ctc", "wer", False, pretrained, random_init, pretrained - random_init, 10, 5, 0.0,
        pretrained_output_ratio=ours, random_init_output_ratio=theirs,
    )
    assert record.verdict == verdict
    assert record.pretraining_helps == (verdict == "yes")


@pytest.mark.parametrize(
    ("low", "high", "verdict", "helps"),
    [
        (-0.02, 0.05, "within noise", False),  # the interval contains 0
        (0.0, 0.05, "within noise", False),  # touching 0 is not enough
        (0.01, 0.05, "yes", True),
        (-0.05, -0.01, "no", False),
    ],
)
def test_verdict_uses_the_delta_interval(low: float, high: float, verdict: str, helps: bool) -> None:
    record = BaselineRecord("t", "top1", True, 0.62 + (low + high) / 2, 0.62, (low + high) / 2, 10, 5, 0.0, low, high)
    assert (record.verdict, record.pretraining_helps) == (verdict, helps)


@pytest.mark.parametrize(
    ("metric", "pretrained", "baseline", "interval", "ratios", "beats"),
    [
        ("top1", 0.80, 0.70, (0.05, 0.15), None, True),
        ("top1", 0.80, 0.78, (-0.01, 0.05), None, False),  # within noise: not a result yet
        ("top1", 0.63, 0.83, (-0.23, -0.17), None, False),  # the demo's probe: raw pixels win
        ("top1", 0.80, 0.70, None, None, True),  # no interval: the sign decides, as for random init
        ("cer", 0.71, 0.75, (-0.06, -0.02), (0.9, 0.43), True),  # lower is better
        ("cer", 0.71, 0.75, (-0.06, 0.01), (0.9, 0.43), False),
        ("wer", 1.02, 1.20, (-0.25, -0.10), (0.9, 0.4), False),  # both >= 100 %: nothing recognised
        ("cer", 0.60, 0.75, (-0.2, -0.1), (0.3, 0.9), False),  # a win by near-empty transcripts
    ],
)
def test_beats_input_baseline_needs_a_conclusive_win(
    metric: str, pretrained: float, baseline: float, interval: tuple[float, float] | None,
    ratios: tuple[float, float] | None, beats: bool,
) -> None:
    low, high = interval if interval is not None else (None, None)
    ours, theirs = ratios if ratios is not None else (None, None)
    record = BaselineRecord(
        "t", metric, metric == "top1", pretrained, 0.5, pretrained - 0.5, 10, 5, 0.0, pretrained_output_ratio=ours,
        input_baseline_name="x", input_baseline=baseline, input_baseline_delta=pretrained - baseline,
        input_baseline_delta_ci95_low=low, input_baseline_delta_ci95_high=high, input_baseline_output_ratio=theirs,
    )
    assert record.beats_input_baseline is beats
    assert BaselineRecord("t", metric, True, 0.8, 0.5, 0.3, 10, 5, 0.0).beats_input_baseline is None
