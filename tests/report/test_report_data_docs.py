"""The validation section links each modality's GX Data Docs site, relative to the report."""

from __future__ import annotations

from html.parser import HTMLParser

from report_tree import Tree

from d2v.config import load_params
from d2v.report import build_report


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value or "" for name, value in attrs if tag == "a" and name == "href"]


def test_data_docs_that_exist_are_linked_relative_to_the_report(tree: Tree) -> None:
    index = tree.root / "reports" / "validation" / "data_docs" / "image" / "index.html"
    index.parent.mkdir(parents=True)
    index.write_text("<html>GX</html>", encoding="utf-8")
    files = build_report(load_params(tree.params), "params.yaml", out_dir="reports", root=tree.root)
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "- [image: Great Expectations Data Docs](<validation/data_docs/image/index.html>)" in markdown
    assert "text: Great Expectations Data Docs" not in markdown  # text was validated, but built no site
    links = _Hrefs()
    links.feed(files.html.read_text(encoding="utf-8"))
    external = [h for h in links.hrefs if not h.startswith("#")]
    assert external == ["validation/data_docs/image/index.html"]
    assert all((files.html.parent / h).resolve() == index.resolve() for h in external)
