"""Render a Document as GitHub-flavoured Markdown; figures are PNG files next to the report."""

from __future__ import annotations

from d2v.report.document import Block, Code, Document, Figure, Links, Note, Paragraph, Subheading, Table


def _cell(text: str) -> str:
    # A pipe would end the cell and a newline the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return lines


def _block(block: Block, figures_dir: str) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Note):
        return [f"> **Note.** {block.text}"]
    if isinstance(block, Subheading):
        return [f"### {block.text}"]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return [f"![{block.caption}]({figures_dir}/{block.name})", "", f"*{block.caption}*"]
    if isinstance(block, Links):
        return [f"- [{text}](<{href}>)" for text, href in block.items]
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        return [f"{block.summary}:", "", f"{fence}yaml", block.text.rstrip("\n"), fence]
    raise TypeError(f"unknown block {type(block).__name__}")


def render_markdown(document: Document, figures_dir: str) -> str:
    """figures_dir: the figures' folder relative to the Markdown file."""
    lines = [f"# {document.title}", "", f"Generated at {document.generated_at}.", ""]
    contents = [f"- [{s.title}](#{s.title.lower().replace(' ', '-')})" for s in document.sections]
    lines += ["Contents:", "", *contents, ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _block(block, figures_dir) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
