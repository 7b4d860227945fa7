"""The "Pretraining health" section: relative loss, effective ranks, masked fraction, the flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image
from report_tree import IMAGE_HEALTH, Tree, write_pretrain, write_speech

from d2v.config import load_params
from d2v.report import build_report
from d2v.report.build import FIGURES_DIR
from d2v.report.document import Figure, Note, Paragraph, Table
from d2v.report.health import FIGURE_NAME, LEARNED_NOTHING, LEARNING, health_row, health_section, learned_nothing
from d2v.report.inputs import collect_all
from d2v.report.sections import ReportContext


def _context(tree: Tree) -> ReportContext:
    return ReportContext(collect_all(tree.root / "metrics", tree.root / "reports" / "validation"),
                         load_params(tree.params), Path("metrics"), Path("reports/validation"))


def _rows(markdown: str) -> dict[str, str]:
    section = markdown[markdown.index("## Pretraining health"):markdown.index("## Downstream evaluation")]
    return {line.split(" | ")[0][2:]: line for line in section.splitlines() if line.startswith("| ")}


@pytest.mark.parametrize(("final", "flagged"), [(1.02, True), (1.0, True), (0.4, False), (0.9999, False)])
def test_a_final_relative_loss_of_one_or_more_is_flagged(final: float, flagged: bool) -> None:
    assert learned_nothing({"final_rel_loss": final}) is flagged


@pytest.mark.parametrize("summary", [{}, {"final_rel_loss": None}, {"final_rel_loss": "n/a"}])
def test_a_summary_without_a_relative_loss_is_neither_flagged_nor_cleared(summary: dict) -> None:
    assert learned_nothing(summary) is None


def test_report_flags_the_run_that_learned_nothing_in_markdown_and_html(tree: Tree) -> None:
    write_speech(tree.root)  # speech: relative loss 1.0004 -> 1.0213
    files = build_report(load_params(tree.params), "params.yaml", root=tree.root)
    md, html = files.markdown.read_text(encoding="utf-8"), files.html.read_text(encoding="utf-8")
    rows = _rows(md)
    assert rows["speech"] == (f"| speech | 1.000 → 1.021 | 12.3 of D = 128 | 1.9 of D = 128 | 0.493 "
                              f"| {LEARNED_NOTHING} |")
    assert rows["image"] == f"| image | 0.999 → 0.401 | 41.3 of D = 128 | 27.6 of D = 128 | 0.800 | {LEARNING} |"
    assert f"> **Note.** {LEARNED_NOTHING}: speech (relative loss 1.000 → 1.021)." in md
    assert f'<p class="note"><strong>Note.</strong> {LEARNED_NOTHING}: speech' in html
    assert f"<td>speech</td><td>1.000 → 1.021</td>" in html and f"<td>{LEARNED_NOTHING}</td>" in html
    assert md.count("learned nothing") == 2 and "image (relative loss" not in md  # 0.40 is not flagged
    figure = files.markdown.parent / FIGURES_DIR / FIGURE_NAME
    assert figure in files.figures and f"]({FIGURES_DIR}/{FIGURE_NAME})" in md
    assert Image.open(figure).format == "PNG"


def test_old_summaries_show_dashes_and_nothing_is_flagged(tree: Tree) -> None:
    files = build_report(load_params(tree.params), "params.yaml", root=tree.root)
    md = files.markdown.read_text(encoding="utf-8")
    rows = _rows(md)
    assert rows["text"] == "| text | — | — | — | — | — |"  # written before the health figures existed
    assert rows["speech"] == "| speech | not run | — | — | — | — |"
    assert "learned nothing" not in md and "Note.** ⚠" not in md


def test_without_any_relative_loss_log_there_is_no_figure(tree: Tree) -> None:
    write_pretrain(tree.root, "image", steps=10, samples_per_s=1.0, train_time_s=1.0)  # an old-format image run
    section = health_section(_context(tree))
    assert not any(isinstance(b, Figure) for b in section.blocks)
    assert not any(isinstance(b, Note) for b in section.blocks)
    assert any(isinstance(b, Paragraph) and "No per-step relative loss" in b.text for b in section.blocks)
    table = next(b for b in section.blocks if isinstance(b, Table))
    assert table.rows[0] == ("image", "—", "—", "—", "—", "—")


def test_the_rank_stands_alone_when_the_width_is_unknown(tree: Tree) -> None:
    image = _context(tree).modalities[0]
    assert health_row(image, None)[2:4] == (f"{IMAGE_HEALTH.target_rank:.1f}", f"{IMAGE_HEALTH.pred_rank:.1f}")


def test_an_unresolvable_model_leaves_the_width_out(tree: Tree) -> None:
    ctx = _context(tree)
    params = ctx.params
    broken = dataclasses.replace(params, model=dataclasses.replace(
        params.model, image=dataclasses.replace(params.model.image, preset="no-such-preset")))
    table = next(b for b in health_section(dataclasses.replace(ctx, params=broken)).blocks if isinstance(b, Table))
    assert table.rows[0][2] == "41.3" and table.rows[2][0] == "text"

