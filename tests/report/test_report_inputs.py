from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from d2v.errors import D2VError
from d2v.report.inputs import collect_all, read_confusion, read_eval, read_live_plots, read_step_tsv, read_validation

from report_tree import IMAGE_RECORDS, TEXT_AVERAGE, Tree


def test_collects_what_the_producers_wrote(tree: Tree) -> None:
    image, speech, text = collect_all(tree.root / "metrics", tree.root / "reports" / "validation")
    assert image.pretrain is not None and image.pretrain.summary["steps"] == 60
    assert image.pretrain.steps["step"][:3] == (1.0, 2.0, 3.0)
    assert len(image.pretrain.steps["loss"]) == 60
    assert [r.task for r in image.evaluation] == ["linear_probe", "finetune"]
    assert image.evaluation == IMAGE_RECORDS  # every field read back, the input baseline's included
    assert image.evaluation[0].beats_input_baseline is False and image.evaluation[1].beats_input_baseline is True
    assert text.evaluation[1].input_baseline is None  # null in the file: none
    assert text.evaluation[0].task == "average" and text.evaluation[0].pretrained == pytest.approx(TEXT_AVERAGE)
    assert image.validation is not None and image.validation.success and image.validation.n_expectations == 9
    assert image.confusion is not None and image.confusion.labels == ("Pullover", "T-shirt", "Trouser")
    assert (speech.pretrain, speech.evaluation, speech.validation, speech.confusion) == (None, (), None, None)


def test_confusion_counts_and_numeric_label_order(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("actual,predicted\n10,10\n2,10\n2,2\n10,2\n10,10\n", encoding="utf-8")
    confusion = read_confusion(path)
    assert confusion is not None
    assert confusion.labels == ("2", "10")  # numbers, not strings: 2 before 10
    assert confusion.counts == ((1, 1), (1, 2))


def test_live_plot_files_are_joined_on_step(tmp_path: Path) -> None:
    # DVCLive writes one file per metric; a metric measured every other step leaves NaN between.
    (tmp_path / "loss.tsv").write_text("step\tloss\n1\t2.5\n2\t2.0\n3\t1.5\n", encoding="utf-8")
    (tmp_path / "rel_loss.tsv").write_text("step\trel_loss\n1\t0.9\n3\t0.7\n", encoding="utf-8")
    table = read_live_plots(tmp_path)
    assert table["step"] == (1.0, 2.0, 3.0) and table["loss"] == (2.5, 2.0, 1.5)
    assert table["rel_loss"][0] == 0.9 and math.isnan(table["rel_loss"][1]) and table["rel_loss"][2] == 0.7
    (tmp_path / "tau.tsv").write_text("tau\n0.99\n", encoding="utf-8")
    with pytest.raises(D2VError, match=r"tau\.tsv: no 'step' column"):
        read_live_plots(tmp_path)


def test_bad_inputs_name_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    tsv = tmp_path / "image.tsv"
    tsv.write_text("step\tloss\n1\t2.0\n2\n", encoding="utf-8")
    with pytest.raises(D2VError, match=r"image\.tsv:3: 1 fields, expected 2"):
        read_step_tsv(tsv)
    tsv.write_text("step\tloss\n1\tabc\n", encoding="utf-8")
    with pytest.raises(D2VError, match=r"image\.tsv:2 column loss: 'abc' is not a number"):
        read_step_tsv(tsv)

    broken = tmp_path / "image.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(D2VError, match=r"image\.json: not valid JSON"):
        read_eval(broken)
    broken.write_text(json.dumps({"linear_probe": {"task": "linear_probe", "metric": "top1"}}), encoding="utf-8")
    with pytest.raises(D2VError, match=r"task 'linear_probe'.*missing higher_is_better"):
        read_eval(broken)
    broken.write_text(json.dumps({"rows": 3}), encoding="utf-8")
    with pytest.raises(D2VError, match="'success' key"):
        read_validation(broken)


def test_records_written_before_input_baselines_still_read(tmp_path: Path) -> None:
    old = {"task": "ctc", "metric": "wer", "higher_is_better": False, "pretrained": 0.9, "random_init": 1.1,
           "delta": -0.2, "n_train": 214, "n_test": 80, "wall_time_s": 170.0}  # no input_baseline* keys at all
    path = tmp_path / "speech.json"
    path.write_text(json.dumps({"ctc": old}), encoding="utf-8")
    (record,) = read_eval(path)
    assert (record.input_baseline_name, record.input_baseline, record.beats_input_baseline) == (None, None, None)
    assert record.verdict == "yes"
