"""d2v/layout.py: the modality names and every run path, one definition."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import d2v
from d2v.errors import D2VError
from d2v.layout import MODALITIES, Layout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def layout() -> Layout:
    return Layout.from_params(REPO / "params.yaml")


def test_modalities_are_defined_once_in_report_order() -> None:
    assert MODALITIES == ("image", "speech", "text") and d2v.MODALITIES is MODALITIES


def test_data_directories_come_from_params_and_the_rest_is_fixed(layout: Layout) -> None:
    assert layout.prepared("speech") == Path("data/prepared/speech")
    assert layout.prepare_output("text") == Path("data/interim/text") != layout.prepared("text")
    assert layout.prepare_output("image") == layout.prepared("image")
    assert layout.validation_report("image") == Path("reports/validation/image.json")
    assert layout.checkpoint("text") == Path("models/text/checkpoint.pt")
    assert (layout.pretrain_summary("image"), layout.pretrain_steps("image")) == (
        Path("metrics/pretrain/image/metrics.json"), Path("metrics/pretrain/image/plots/metrics"))
    assert (layout.eval_metrics("text"), layout.eval_summary("text")) == (
        Path("metrics/eval/text.json"), Path("metrics/eval/text/metrics.json"))
    assert layout.eval_plot("image") == Path("metrics/eval/image_confusion.csv")
    assert layout.eval_plot("speech") == layout.eval_tasks("speech") == Path("metrics/eval/speech_tasks.csv")
    assert layout.report_figures == Path("reports/benchmark_figures")


def test_under_prefixes_every_directory(layout: Layout, tmp_path: Path) -> None:
    rooted = layout.under(tmp_path)
    for field in dataclasses.fields(Layout):
        assert getattr(rooted, field.name) == tmp_path / getattr(layout, field.name), field.name
    assert rooted.eval_metrics("text") == tmp_path / "metrics/eval/text.json"
    assert Layout.of_checkout(REPO) == layout.under(REPO)


def test_run_files_hold_a_modalitys_outputs_and_the_shared_ones(layout: Layout) -> None:
    files = layout.run_files("speech")
    assert layout.checkpoint_dir("speech") in files and layout.report_markdown in files
    assert Path("dvc.lock") in files
    assert not any("image" in p.as_posix() or "text" in p.as_posix() for p in files)


def test_an_unknown_modality_is_named(layout: Layout) -> None:
    with pytest.raises(D2VError, match="modality 'video': expected one of image, speech, text"):
        layout.checkpoint("video")
