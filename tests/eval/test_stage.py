"""The stage's per-task table for `dvc plots`: the existing columns first, then the input baseline."""

from __future__ import annotations

import csv

from d2v.eval.baseline import BaselineRecord
from d2v.eval.stage import write_task_table


def test_task_table_keeps_its_columns_and_adds_the_input_baseline(tmp_path) -> None:
    records = [
        BaselineRecord("average", "score", True, 0.586, 0.572, 0.014, 6000, 3570, 260.0,
                       input_baseline_name="bag of words", input_baseline=0.654, input_baseline_delta=0.586 - 0.654),
        BaselineRecord("old", "score", True, 0.5, 0.4, 0.1, 10, 5, 1.0),  # a record without one
    ]
    path = write_task_table(tmp_path / "text_tasks.csv", records)
    with path.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["task", "metric", "pretrained", "random_init", "delta", "input_baseline", "input_baseline_delta"]
    rows = list(csv.DictReader(path.open(newline="")))
    assert rows[0]["delta"] == "0.014000" and rows[0]["input_baseline"] == "0.654000"
    assert rows[0]["input_baseline_delta"] == "-0.068000"
    assert (rows[1]["input_baseline"], rows[1]["input_baseline_delta"]) == ("", "")
