"""The benchmark report: Markdown + self-contained HTML + PNG plots from the pipeline's outputs.

    from d2v.report import build_report
    files = build_report(load_params("params.yaml"), "params.yaml", out_dir="reports")

Modules: inputs (read metrics files), provenance (git, dvc.lock, hardware), plots (matplotlib),
sections / health / provenance_section (content), markdown / html (renderers), build (orchestration).
"""

from d2v.report.build import ReportFiles, build_report

__all__ = ["ReportFiles", "build_report"]
