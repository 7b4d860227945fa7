"""A tiny document model: the report's content once, rendered to Markdown and to HTML.

Text in blocks is plain (renderers escape it); `Code` keeps its line breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A highlighted paragraph: warnings a reader must not miss (e.g. the scale of the numbers)."""

    text: str


@dataclass(frozen=True)
class Subheading:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    name: str  # file name of the PNG next to the Markdown report, e.g. "pretrain_image.png"
    png: bytes
    caption: str


@dataclass(frozen=True)
class Code:
    text: str
    summary: str  # HTML shows it folded under this line


@dataclass(frozen=True)
class Links:
    """A list of links to files beside the report (relative paths), e.g. the GX Data Docs sites."""

    items: tuple[tuple[str, str], ...]  # (text, relative path)


Block = Union[Paragraph, Note, Subheading, Table, Figure, Code, Links]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Document:
    title: str
    generated_at: str  # the only line that differs between two runs on identical metrics
    sections: tuple[Section, ...]

    def figures(self) -> tuple[Figure, ...]:
        return tuple(b for s in self.sections for b in s.blocks if isinstance(b, Figure))
