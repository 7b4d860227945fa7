from __future__ import annotations

import dataclasses
from pathlib import Path

from d2v.eval.record import BaselineRecord, write_eval_metrics
from d2v.layout import Layout
from d2v.train.metrics import write_summary
from pipelines.demo_summary import headline_rows, health_rows, output_files

REPO = Path(__file__).resolve().parents[2]


def _layout(eval_dir: Path) -> Layout:
    return dataclasses.replace(Layout.from_params(REPO / "params.yaml"), eval_metrics_dir=eval_dir)


def test_headline_rows_give_each_main_task_and_its_verdict(tmp_path) -> None:
    write_eval_metrics(tmp_path / "image.json", [BaselineRecord("linear_probe", "top1", True, 0.66, 0.44, 0.22, 3, 1, 1.0, 0.19, 0.26)])
    write_eval_metrics(tmp_path / "text.json", [BaselineRecord("average", "score", True, 0.545, 0.538, 0.007, 6, 3, 1.0, -0.002, 0.017)])
    rows = headline_rows(_layout(tmp_path))
    assert len(rows) == 3
    image, speech, text = rows  # MODALITIES order
    assert "linear_probe" in image and "delta +0.2200" in image and image.endswith("pretraining helps: yes")
    assert speech.split() == ["speech", "not", "run"]
    assert text.endswith("pretraining helps: within noise")


def test_speech_headline_shows_the_cer_beside_the_wer(tmp_path) -> None:
    # The fresh-clone case with the waveform CNN: fewer words wrong (98 vs 103 %) only because almost
    # nothing is emitted (5 % of the reference characters against random init's 65 %).
    write_eval_metrics(tmp_path / "speech.json", [
        BaselineRecord("ctc", "wer", False, 0.981, 1.031, -0.050, 214, 80, 1.0, -0.074, -0.031, 0.05, 0.65),
        BaselineRecord("ctc_cer", "cer", False, 0.954, 0.774, 0.180, 214, 80, 1.0, 0.169, 0.190),
        BaselineRecord("ctc_asr_real_wer", "asr_real_wer", False, 1.0, 1.27, -0.27, 214, 544, 1.0),
    ])
    rows = [row for row in headline_rows(_layout(tmp_path)) if row.split()[0] == "speech"]
    assert len(rows) == 2
    assert "ctc " in rows[0] and rows[0].endswith(
        "pretraining helps: inconclusive (the better run's transcripts are near-empty: 5% of the reference length)"
    )
    assert "ctc_cer" in rows[1] and rows[1].endswith("pretraining helps: no")


def test_health_rows_give_the_relative_loss_and_flag_a_run_that_learned_nothing(tmp_path) -> None:
    layout = dataclasses.replace(Layout.from_params(REPO / "params.yaml"), pretrain_metrics_dir=tmp_path)
    write_summary(layout.pretrain_summary("image"), {"steps": 30, "first_rel_loss": 1.6035, "final_rel_loss": 0.4})
    write_summary(layout.pretrain_summary("speech"), {"steps": 30, "first_rel_loss": 1.0004, "final_rel_loss": 1.02})
    rows = health_rows(layout)
    assert rows == [
        "  image   relative loss 1.603 -> 0.400",
        "  speech  relative loss 1.000 -> 1.020  LEARNED NOTHING (relative loss >= 1)",
        "  text    not run",
    ]
    write_summary(layout.pretrain_summary("text"), {"steps": 30, "final_loss_avg": 0.5})  # from before rel_loss
    assert health_rows(layout)[2] == "  text    relative loss not logged"


def test_output_files_lists_the_layouts_metrics_that_exist(tmp_path) -> None:
    layout = Layout.from_params(REPO / "params.yaml").under(tmp_path)
    for path in (layout.pretrain_summary("text"), layout.validation_report("image")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert output_files(layout) == sorted([layout.pretrain_summary("text"), layout.validation_report("image")])


def test_each_main_result_shows_its_input_baseline(tmp_path) -> None:
    write_eval_metrics(tmp_path / "image.json", [BaselineRecord(
        "linear_probe", "top1", True, 0.634, 0.436, 0.198, 3000, 1000, 9.0, 0.165, 0.232,
        input_baseline_name="raw pixels", input_baseline=0.832, input_baseline_delta=-0.198,
        input_baseline_delta_ci95_low=-0.23, input_baseline_delta_ci95_high=-0.17,
    )])
    image = [row for row in headline_rows(_layout(tmp_path)) if row.split() and row.split()[0] != "speech"]
    assert image[0].endswith("pretraining helps: yes")
    assert "input baseline (raw pixels) 0.8320" in image[1] and "pretrained - baseline -0.1980" in image[1]
    assert image[1].endswith("beats the input baseline: no: not yet a result")
