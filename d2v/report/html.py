"""Render a Document as one self-contained HTML page: inline CSS, PNGs as base64 data URIs.

No script, font, stylesheet or image is fetched from anywhere, so the file reads the same offline,
attached to an e-mail or published to S3. The page is at most ~62rem wide and every table cell wraps,
so nothing scrolls sideways on a laptop screen: cells wrap
between words, and a word (a hash, a path) breaks only when it is wider than the page.
"""

from __future__ import annotations

import base64
import re
from html import escape

from d2v.report.document import Block, Code, Document, Figure, Links, Note, Paragraph, Subheading, Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 62rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.generated { color: #59636e; margin-top: 0; }
nav ul { margin: .3rem 0; padding-left: 1.2rem; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .6rem .9rem; margin: 1rem 0; }
table { border-collapse: collapse; max-width: 100%; margin: .6rem 0; font-size: .88rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .45rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }  /* breaks only words longer than the column can be */
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
caption { caption-side: bottom; text-align: left; color: #59636e; font-size: .8rem; padding-top: .2rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #59636e; font-size: .85rem; }
details { margin: .6rem 0; }
pre { background: #f6f8fa; padding: .7rem; font-size: .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
""".strip()


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Note):
        return f'<p class="note"><strong>Note.</strong> {escape(block.text)}</p>'
    if isinstance(block, Subheading):
        return f"<h3>{escape(block.text)}</h3>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return (f'<figure><img alt="{escape(block.caption)}" src="{data_uri(block.png)}">'
                f"<figcaption>{escape(block.caption)}</figcaption></figure>")
    if isinstance(block, Links):  # files beside the report: the only links that leave the page
        return "<ul>" + "".join(f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for text, href in block.items) + "</ul>"
    if isinstance(block, Code):
        return f"<details><summary>{escape(block.summary)}</summary><pre>{escape(block.text)}</pre></details>"
    raise TypeError(f"unknown block {type(block).__name__}")


def render_html(document: Document) -> str:
    nav = "".join(f'<li><a href="#{anchor(s.title)}">{escape(s.title)}</a></li>' for s in document.sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(document.title)}</title>",
        f"<style>\n{CSS}\n</style></head><body>",
        f"<h1>{escape(document.title)}</h1>",
        f'<p class="generated">Generated at {escape(document.generated_at)}.</p>',
        f"<nav><ul>{nav}</ul></nav>",
    ]
    for section in document.sections:
        parts.append(f'<section><h2 id="{anchor(section.title)}">{escape(section.title)}</h2>')
        parts += [_block(b) for b in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
