from __future__ import annotations

import io
import math

from PIL import Image

from d2v.report.inputs import Confusion
from d2v.report.plots import confusion_matrix, pretraining_curves

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
