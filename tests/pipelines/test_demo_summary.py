from __future__ import annotations

from d2v.eval.baseline import BaselineRecord, write_eval_metrics
from pipelines.demo_summary import headline_rows


def test_headline_rows_give_each_main_task_and_its_verdict(tmp_path) -> None:
    write_eval_metrics(tmp_path / "image.json", [BaselineRecord("linear_probe", "top1", True, 0.66, 0.44, 0.22, 3, 1, 1.0, 0.19, 0.26)])
    write_eval_metrics(tmp_path / "text.json", [BaselineRecord("average", "score", True, 0.545, 0.538, 0.007, 6, 3, 1.0, -0.002, 0.017)])
    rows = headline_rows(tmp_path)
    assert len(rows) == 3
    image, speech, text = rows  # MODALITIES order
    assert "linear_probe" in image and "delta +0.2200" in image and image.endswith("pretraining helps: yes")
    assert speech.split() == ["speech", "not", "run"]
    assert text.endswith("pretraining helps: within noise")
