import math

import pytest
import torch

from d2v.train.health import RECENT, HealthLog


def _row(step: int, **values: float) -> dict[str, float]:
    return {"step": step, **values}


def test_summary_averages_the_last_recent_steps_and_keeps_the_first_rel_loss() -> None:
    log = HealthLog()
    for step in range(1, 16):  # rel_loss 1.5, 1.4, ..., 0.1
        log.observe(_row(step, rel_loss=1.6 - step / 10, target_rank=float(step), pred_rank=2.0 * step,
                         masked_fraction=0.5 + (step % 2) / 10))
    summary = log.summary()
    last = range(16 - RECENT, 16)
    assert summary["first_rel_loss"] == pytest.approx(1.5)
    assert summary["final_rel_loss"] == pytest.approx(sum(1.6 - s / 10 for s in last) / RECENT)
    assert summary["final_target_rank"] == pytest.approx(sum(last) / RECENT)
    assert summary["final_pred_rank"] == pytest.approx(2 * sum(last) / RECENT)
    # 8 odd steps at 0.6, 7 even ones at 0.5: the mean is over the whole run, not the last steps.
    assert summary["mean_masked_fraction"] == pytest.approx((8 * 0.6 + 7 * 0.5) / 15)


def test_non_finite_and_missing_values_are_left_out() -> None:
    log = HealthLog()
    log.observe(_row(1, rel_loss=math.nan, masked_fraction=math.inf))  # e.g. a skipped update
    log.observe(_row(2, rel_loss=0.9, target_rank=5.0, masked_fraction=0.4))
    log.observe(_row(3, rel_loss=0.7, masked_fraction=math.nan))
    summary = log.summary()
    assert summary["first_rel_loss"] == 0.9 and summary["final_rel_loss"] == pytest.approx(0.8)
    assert summary["final_target_rank"] == 5.0 and summary["mean_masked_fraction"] == 0.4
    assert math.isnan(summary["final_pred_rank"])  # never reported: null in the JSON


def test_a_model_that_reports_nothing_gives_nan_figures() -> None:
    assert all(math.isnan(v) for v in HealthLog().summary().values())


def test_state_dict_round_trips_through_a_weights_only_checkpoint(tmp_path) -> None:
    log = HealthLog()
    for step in range(1, 13):
        log.observe(_row(step, rel_loss=1.0 / step, target_rank=3.0, pred_rank=2.5, masked_fraction=0.61))
    torch.save({"progress": {"health": log.state_dict()}}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["progress"]["health"]
    restored = HealthLog.from_state_dict(loaded)
    assert restored == log and restored.summary() == log.summary()
    # Both go on identically: the summary of a resumed run equals the uninterrupted one.
    for step_log in (log, restored):
        step_log.observe(_row(13, rel_loss=0.05, target_rank=4.0, pred_rank=3.0, masked_fraction=0.6))
    assert restored.summary() == log.summary()


def test_a_checkpoint_without_health_state_starts_empty() -> None:
    assert HealthLog.from_state_dict(None) == HealthLog()
