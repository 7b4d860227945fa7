"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed).

PNGs carry no timestamp or software tag, so identical metrics give byte-identical figures.
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from d2v.layout import MODALITIES  # noqa: E402
from d2v.report.inputs import Confusion  # noqa: E402

_PNG_METADATA = {"Software": None}  # drop the matplotlib version tag: reproducible bytes
_DPI = 100


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    plt.close(figure)
    return buffer.getvalue()


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _plot_columns(axis, steps: dict[str, tuple[float, ...]], columns: Sequence[str], x: Sequence[float]) -> bool:
    drawn = False
    for name in columns:
        if name in steps:
            xs, ys = _finite(x, steps[name])
            if xs:
                axis.plot(xs, ys, label=name, linewidth=1.2)
                drawn = True
    if not drawn:
        axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="grey")
    return drawn


def _step_axis(steps: Mapping[str, Sequence[float]]) -> Sequence[float]:
    """The logged step numbers; 1, 2, ... for a log without a step column."""
    return steps.get("step") or tuple(float(i) for i in range(1, 1 + max((len(v) for v in steps.values()), default=0)))


def pretraining_curves(modality: str, steps: dict[str, tuple[float, ...]]) -> bytes:
    """Three panels over optimizer steps: loss; target and prediction variance; lr (left) and tau (right)."""
    x = _step_axis(steps)
    # Fixed margins rather than constrained layout: the same look at half the drawing time.
    figure, (loss_ax, var_ax, lr_ax) = plt.subplots(1, 3, figsize=(12, 3.4))
    figure.subplots_adjust(left=0.05, right=0.93, bottom=0.15, top=0.83, wspace=0.32)
    figure.suptitle(f"{modality}: pretraining", fontsize=11)

    _plot_columns(loss_ax, steps, ["loss"], x)
    loss_ax.set_title("loss (masked positions)", fontsize=10)

    if _plot_columns(var_ax, steps, ["target_var", "pred_var"], x):
        var_ax.legend(fontsize=8)
    var_ax.set_title("variance (collapse guard)", fontsize=10)

    _plot_columns(lr_ax, steps, ["lr"], x)
    lr_ax.set_title("learning rate and EMA tau", fontsize=10)
    lr_ax.set_ylabel("lr", color="C0")
    tau_ax = lr_ax.twinx()
    if "tau" in steps:
        xs, ys = _finite(x, steps["tau"])
        tau_ax.plot(xs, ys, color="C3", linewidth=1.2)
    tau_ax.set_ylabel("tau", color="C3")

    for axis in (loss_ax, var_ax, lr_ax):
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    return _png(figure)


def confusion_matrix(confusion: Confusion, title: str) -> bytes:
    """Counts per (actual, predicted), each cell labelled; rows are the true classes."""
    n = len(confusion.labels)
    size = min(7.0, 2.5 + 0.4 * n)
    figure, axis = plt.subplots(figsize=(size + 1.2, size))
    figure.subplots_adjust(left=0.2, right=0.97, bottom=0.2, top=0.93)
    image = axis.imshow(confusion.counts, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8)
    peak = max((max(row) for row in confusion.counts), default=0)
    for i, row in enumerate(confusion.counts):
        for j, count in enumerate(row):
            colour = "white" if peak and count > peak / 2 else "black"
            axis.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(n), confusion.labels, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(n), confusion.labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title, fontsize=10)
    return _png(figure)


def relative_loss_curves(logs: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """One line per run (modality -> its step log): relative loss (1 - R^2) per step, and the
    no-skill level 1.0 dashed, which a run that learned something ends below."""
    figure, axis = plt.subplots(figsize=(8, 3.6))
    figure.subplots_adjust(left=0.09, right=0.97, bottom=0.15, top=0.9)
    for name, steps in logs.items():
        xs, ys = _finite(_step_axis(steps), steps.get("rel_loss", ()))
        colour = f"C{MODALITIES.index(name)}" if name in MODALITIES else None  # the same colour in every report
        axis.plot(xs, ys, label=name, linewidth=1.2, color=colour)
    axis.axhline(1.0, color="grey", linestyle="--", linewidth=1.0, label="1.0: no better than channel means")
    low, high = axis.get_ylim()
    if low > 0 and high / low > 10:  # a run that starts far above 1 would squash the region around 1.0
        axis.set_yscale("log")
    axis.set_title("relative loss at masked positions (1 - R²)", fontsize=10)
    axis.set_xlabel("step")
    axis.set_ylabel("1 - R²")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _png(figure)
