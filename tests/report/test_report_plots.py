from __future__ import annotations

import io
import math

from PIL import Image

from d2v.report.inputs import Confusion
from d2v.report.plots import confusion_matrix, pretraining_curves, relative_loss_curves

STEPS = {
    "step": (1.0, 2.0, 3.0, 4.0),
    "loss": (2.0, math.nan, 1.5, 1.2),  # a skipped non-finite step is logged as nan
    "target_var": (0.9, 0.9, 0.8, 0.8),
    "pred_var": (0.3, 0.4, 0.5, 0.6),
    "lr": (1e-4, 2e-4, 3e-4, 4e-4),
    "tau": (0.99, 0.991, 0.992, 0.993),
}


def test_curves_are_reproducible_pngs() -> None:
    png = pretraining_curves("image", STEPS)
    assert png == pretraining_curves("image", STEPS)  # no timestamp or version in the bytes
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1200, 340)
    assert len(image.convert("RGB").getcolors(1 << 20) or []) > 50


def test_curves_tolerate_missing_columns() -> None:
    only_loss = {"step": STEPS["step"], "loss": STEPS["loss"]}
    full, partial = pretraining_curves("text", STEPS), pretraining_curves("text", only_loss)
    assert Image.open(io.BytesIO(partial)).size == Image.open(io.BytesIO(full)).size and partial != full


def test_confusion_matrix_png() -> None:
    png = confusion_matrix(Confusion(("a", "b"), ((3, 1), (0, 4))), "test")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 300


def test_relative_loss_curves_draw_one_line_per_run_reproducibly() -> None:
    logs = {"image": {**STEPS, "rel_loss": (1.6, 1.2, math.nan, 0.8)}, "speech": {"rel_loss": (1.0, 1.01, 1.02)}}
    png = relative_loss_curves(logs)
    assert png == relative_loss_curves(logs)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (800, 360)
    assert png != relative_loss_curves({"image": logs["image"]})


def test_relative_loss_curves_tolerate_a_log_without_the_column_and_wide_ranges() -> None:
    old = relative_loss_curves({"text": STEPS})  # a run from before the rel_loss column: only the 1.0 line
    wide = relative_loss_curves({"text": {"rel_loss": (40.0, 5.0, 0.9, 0.5)}})  # drawn on a log axis
    assert Image.open(io.BytesIO(old)).size == Image.open(io.BytesIO(wide)).size and old != wide
