import json
from pathlib import Path

from d2v.eval.record import BaselineRecord
from d2v.eval.live import headline_metrics, log_eval_metrics

PROBE = BaselineRecord("linear_probe", "top1", True, 0.79, 0.69, 0.10, 3000, 1000, 22.0, 0.07, 0.12,
                       input_baseline_name="raw pixels", input_baseline=0.83, input_baseline_delta=-0.04)
CTC = BaselineRecord("ctc", "wer", False, 1.01, 1.03, -0.02, 214, 80, 160.0)  # no interval, no baseline


def test_headline_metrics_are_flat_task_field_names_without_missing_values() -> None:
    flat = headline_metrics([PROBE, CTC])
    assert flat["linear_probe/delta"] == 0.10 and flat["linear_probe/input_baseline"] == 0.83
    assert flat["ctc/pretrained"] == 1.01 and "ctc/delta_ci95_low" not in flat and "ctc/input_baseline" not in flat


def test_dvclive_writes_them_nested_by_task_and_a_rerun_replaces_them(tmp_path: Path) -> None:
    path = log_eval_metrics(tmp_path / "image", [PROBE, CTC])
    written = json.loads(path.read_text())
    assert written["linear_probe"]["random_init"] == 0.69 and written["ctc"]["delta"] == -0.02
    assert not (tmp_path / "image" / "plots").exists()  # one value per task: nothing to plot
    log_eval_metrics(tmp_path / "image", [CTC])
    assert "linear_probe" not in json.loads(path.read_text())
