"""The report's "Pretraining health" section: did the student learn to predict the teacher?

A falling loss alone does not say so: the loss scale moves with the targets. The relative loss
(1 - R^2 at masked positions, d2v.core.health) does: 1.0 is what predicting each target channel's
mean would score, so a run that ends at or above 1 learned nothing a constant could not give, and it
is flagged. The effective ranks say whether targets and predictions use many directions of the
D-dimensional space or collapsed onto a few. Summaries written before these figures existed show "—".
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from d2v.config import Params
from d2v.errors import D2VError
from d2v.report.document import Block, Figure, Note, Paragraph, Section, Table
from d2v.report.inputs import ModalityInputs
from d2v.report.plots import relative_loss_curves
from d2v.report.sections import NOT_RUN, ReportContext, fmt

TITLE = "Pretraining health"
LEARNED_NOTHING = "⚠ learned nothing: relative loss ≥ 1"
LEARNING = "learning: relative loss < 1"
FIGURE_NAME = "pretrain_rel_loss.png"
HEADER = ("modality", "relative loss (1 − R²), first → final", "target effective rank", "prediction effective rank",
          "masked fraction (mean)", "health")
EXPLANATION = (
    "Relative loss = Σ‖prediction − target‖² / Σ‖target − per-channel mean‖² at masked positions (1 − R²): "
    "1.0 is no better than predicting every target by its channel mean, 0 is perfect. Effective rank = exp of "
    "the entropy of the normalised singular values of the centred targets (predictions): 1 means a single "
    "direction, D (the encoder width) an even spread; a low target rank means the teacher collapsed. "
    "Final values are means of the last 10 logged steps; the masked fraction is the mean over the run."
)


def _number(summary: Mapping[str, Any], key: str) -> float | None:
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def learned_nothing(summary: Mapping[str, Any]) -> bool | None:
    """True when the final relative loss is ≥ 1; None when the summary has none (older runs)."""
    final = _number(summary, "final_rel_loss")
    return None if final is None else final >= 1.0


def encoder_width(params: Params, modality: str) -> int | None:
    """D, the encoder width of the spec params.yaml resolves to (the targets' dimension)."""
    # Imported here: the model registry is only needed for this one number.
    from d2v.models import model_spec

    try:
        return model_spec(modality, getattr(params.model, modality)).encoder.dim
    except (D2VError, AttributeError):
        return None


def _rank(summary: Mapping[str, Any], key: str, width: int | None) -> str:
    value = _number(summary, key)
    if value is None:
        return "—"
    return f"{value:.1f} of D = {width}" if width else f"{value:.1f}"


def _verdict(summary: Mapping[str, Any]) -> str:
    flag = learned_nothing(summary)
    return "—" if flag is None else LEARNED_NOTHING if flag else LEARNING


def health_row(m: ModalityInputs, width: int | None) -> tuple[str, ...]:
    if m.pretrain is None:
        return (m.modality, NOT_RUN, "—", "—", "—", "—")
    s = m.pretrain.summary
    first, final = _number(s, "first_rel_loss"), _number(s, "final_rel_loss")
    losses = "—" if first is None and final is None else f"{fmt(first, 3)} → {fmt(final, 3)}"
    return (m.modality, losses, _rank(s, "final_target_rank", width), _rank(s, "final_pred_rank", width),
            fmt(_number(s, "mean_masked_fraction"), 3), _verdict(s))


def _flag_note(flagged: Mapping[str, Mapping[str, Any]]) -> Note:
    """flagged: modality -> summary of each run whose final relative loss is ≥ 1."""
    runs = "; ".join(f"{modality} (relative loss {fmt(_number(s, 'first_rel_loss'), 3)} → "
                     f"{fmt(_number(s, 'final_rel_loss'), 3)})" for modality, s in flagged.items())
    return Note(f"{LEARNED_NOTHING}: {runs}. The student predicts the masked targets no better than their "
                "per-channel means, so its downstream numbers measure the architecture, not pretraining. "
                "Check the learning rate, the EMA schedule and the masking before reading further.")


def health_section(ctx: ReportContext) -> Section:
    widths = {m.modality: encoder_width(ctx.params, m.modality) for m in ctx.modalities}
    flagged = {m.modality: m.pretrain.summary for m in ctx.modalities
               if m.pretrain is not None and learned_nothing(m.pretrain.summary)}
    blocks: list[Block] = [_flag_note(flagged)] if flagged else []
    blocks += [
        Paragraph(EXPLANATION),
        Table(HEADER, tuple(health_row(m, widths[m.modality]) for m in ctx.modalities),
              caption="metrics/pretrain/<modality>/metrics.json: first_rel_loss, final_rel_loss, final_target_rank, "
                      "final_pred_rank, mean_masked_fraction"),
    ]
    logs = {m.modality: m.pretrain.steps for m in ctx.modalities
            if m.pretrain is not None and _logged(m.pretrain.steps.get("rel_loss", ()))}
    if logs:
        blocks.append(Figure(FIGURE_NAME, relative_loss_curves(logs),
                             "relative loss (1 − R²) per step, one line per modality; below the dashed line at "
                             "1.0 the student predicts better than the targets' channel means"))
    else:
        blocks.append(Paragraph("No per-step relative loss logged (runs from before the rel_loss column)."))
    return Section(TITLE, tuple(blocks))


def _logged(values: tuple[float, ...]) -> bool:
    return any(math.isfinite(v) for v in values)
