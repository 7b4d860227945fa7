"""Build the benchmark report: collect the pipeline's outputs, render, write atomically.

Writes `<out>/benchmark.md`, `<out>/benchmark_figures/*.png` (the Markdown's images) and the
self-contained `<out>/benchmark.html`. Apart from the "Generated at" line, identical inputs give
identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from d2v.atomic import atomic_write_bytes
from d2v.config import Params
from d2v.layout import METRICS_DIR, REPORT_FIGURES_NAME, REPORT_HTML_NAME, REPORT_MD_NAME, REPORTS_DIR
from d2v.report.document import Document
from d2v.report.health import health_section
from d2v.report.html import render_html
from d2v.report.inputs import collect_all
from d2v.report.markdown import render_markdown
from d2v.report.provenance import RunProvenance, collect_run_provenance
from d2v.report.provenance_section import provenance_section
from d2v.report.sections import (
    ReportContext,
    downstream_section,
    pretraining_section,
    reference_section,
    summary_section,
    throughput_section,
    validation_section,
)

TITLE = "d2v benchmark report: data2vec pretraining and downstream evaluation"
FIGURES_DIR = REPORT_FIGURES_NAME  # d2v/layout.py


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def build_document(ctx: ReportContext, prov: RunProvenance, params_path: str, generated_at: str) -> Document:
    sections = (
        summary_section(ctx),
        pretraining_section(ctx),
        health_section(ctx),
        downstream_section(ctx),
        reference_section(ctx),
        throughput_section(ctx),
        validation_section(ctx),
        provenance_section(ctx, prov, params_path),
    )
    return Document(TITLE, generated_at, sections)


def write_report(document: Document, out_dir: Path) -> ReportFiles:
    figures_dir = out_dir / FIGURES_DIR
    figures = []
    for figure in document.figures():
        atomic_write_bytes(figures_dir / figure.name, figure.png)
        figures.append(figures_dir / figure.name)
    wanted = {f.name for f in document.figures()}
    if figures_dir.is_dir():  # figures of a modality that is no longer reported would mislead
        for stale in figures_dir.glob("*.png"):
            if stale.name not in wanted:
                stale.unlink()
    markdown, html = out_dir / REPORT_MD_NAME, out_dir / REPORT_HTML_NAME
    atomic_write_bytes(markdown, render_markdown(document, FIGURES_DIR).encode("utf-8"))
    atomic_write_bytes(html, render_html(document).encode("utf-8"))
    return ReportFiles(markdown, html, tuple(figures))


def build_report(
    params: Params,
    params_path: str | Path,
    out_dir: str | Path = REPORTS_DIR,
    metrics_dir: str | Path = METRICS_DIR,
    validation_dir: str | Path | None = None,
    root: str | Path = ".",
    now: datetime | None = None,
) -> ReportFiles:
    """The whole report from the files under `root`; validation_dir defaults to params.data.reports_dir."""
    root = Path(root)
    metrics = root / metrics_dir
    validation = root / (validation_dir if validation_dir is not None else params.data.reports_dir)
    ctx = ReportContext(collect_all(metrics, validation), params, Path(metrics_dir),
                        Path(validation_dir if validation_dir is not None else params.data.reports_dir),
                        report_dir=Path(out_dir))
    prov = collect_run_provenance(params, root)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    document = build_document(ctx, prov, str(params_path), stamp)
    return write_report(document, root / out_dir)
