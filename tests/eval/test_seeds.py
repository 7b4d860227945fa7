from __future__ import annotations

import json

import pytest

from d2v.errors import D2VError
from d2v.eval.record import BaselineRecord
from d2v.eval.seeds import parse_seeds, seed_spread, write_seed_spread


def record(task: str, delta: float, low: float | None = None, high: float | None = None) -> BaselineRecord:
    return BaselineRecord(task, "score", True, 0.5 + delta, 0.5, delta, 100, 50, 1.0, low, high)


def test_spread_summarises_every_task_over_seeds(tmp_path) -> None:
    by_seed = {
        0: [record("average", 0.007, -0.002, 0.017), record("sentiment", 0.022, 0.008, 0.038)],
        1: [record("average", 0.011, -0.002, 0.025), record("sentiment", 0.0, -0.019, 0.020)],
        2: [record("sentiment", -0.008, -0.027, 0.009), record("average", -0.004, -0.015, 0.007)],  # any order
    }
    summary = seed_spread(by_seed)
    assert list(summary) == ["average", "sentiment"]
    sentiment = summary["sentiment"]
    assert sentiment["seeds"] == [0, 1, 2] and sentiment["deltas"] == [0.022, 0.0, -0.008]
    assert sentiment["verdicts"] == ["yes", "within noise", "within noise"]
    assert sentiment["mean_delta"] == pytest.approx(0.014 / 3)
    # sample std of (0.022, 0, -0.008): mean 0.004667; squared deviations 3.0044e-4 + 2.178e-5 + 1.6044e-4
    assert sentiment["std_delta"] == pytest.approx((4.8267e-4 / 2) ** 0.5, rel=1e-3)
    assert (sentiment["min_delta"], sentiment["max_delta"]) == (-0.008, 0.022)
    assert sentiment["helps_every_seed"] is False
    path = write_seed_spread(tmp_path / "text_seeds.json", summary)
    assert list(json.loads(path.read_text())) == ["average", "sentiment"]


def test_one_seed_has_zero_spread_and_helps_when_its_verdict_is_yes() -> None:
    summary = seed_spread({3: [record("linear_probe", 0.2, 0.15, 0.25)]})
    row = summary["linear_probe"]
    assert row["std_delta"] == 0.0 and row["helps_every_seed"] is True


def test_missing_task_in_a_seed_is_a_clear_error() -> None:
    with pytest.raises(D2VError, match="seed 1 has no record for task 'paraphrase'"):
        seed_spread({0: [record("paraphrase", 0.1)], 1: [record("average", 0.1)]})


@pytest.mark.parametrize(("text", "expected"), [("0,1,2", [0, 1, 2]), ("7", [7])])
def test_parse_seeds(text: str, expected: list[int]) -> None:
    assert parse_seeds(text) == expected


@pytest.mark.parametrize(("text", "message"), [("0,x", "comma-separated integers"), ("1,1", "distinct"), ("-1", ">= 0"), ("", "integers")])
def test_bad_seeds_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(D2VError, match=message):
        parse_seeds(text)


def test_spread_keeps_the_input_baseline_per_seed() -> None:
    def probe(delta_vs_pixels: float, low: float, high: float) -> BaselineRecord:
        return BaselineRecord("linear_probe", "top1", True, 0.63, 0.44, 0.19, 3000, 1000, 1.0, 0.16, 0.23,
                              input_baseline_name="raw pixels", input_baseline=0.63 - delta_vs_pixels,
                              input_baseline_delta=delta_vs_pixels, input_baseline_delta_ci95_low=low,
                              input_baseline_delta_ci95_high=high)

    row = seed_spread({0: [probe(0.03, 0.01, 0.05)], 1: [probe(0.01, -0.01, 0.03)]})["linear_probe"]
    assert row["input_baseline_deltas"] == [0.03, 0.01]
    assert row["beats_input_baseline_every_seed"] is False  # seed 1's interval contains 0
    assert row["helps_every_seed"] is True
    assert seed_spread({0: [record("t", 0.1, 0.05, 0.15)]})["t"]["beats_input_baseline_every_seed"] is False
