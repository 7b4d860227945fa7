"""A real browser reads the report: headless Chromium (Debian `chromium`, in infra/apt-packages.txt).

The screenshot must show the figures (matplotlib's line colours are on the page), and the page must
not scroll sideways at a laptop's width.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image
from report_tree import Tree, make_tree, write_speech

from d2v.config import load_params
from d2v.report import ReportFiles, build_report

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1280
# Matplotlib's first two cycle colours (loss / target_var and pred_var curves), as 8-bit RGB.
CURVE_COLOURS = ((31, 119, 180), (255, 127, 14))


def chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={user_dir}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    tree: Tree = make_tree(tmp_path_factory.mktemp("browser"))
    write_speech(tree.root)  # every modality: the widest tables and all the figures
    return build_report(load_params(tree.params), "params.yaml", root=tree.root,
                        now=datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_screenshot_shows_the_figures(report: ReportFiles, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--window-size={WIDTH},2000", f"--screenshot={shot}", report.html.as_uri())
    assert shot.is_file()
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, tables, shaded note, plots: far from blank
    for curve in CURVE_COLOURS:  # the pretraining curves are drawn, not a broken-image icon
        # The browser scales the figures, so curve pixels are blends: count those close to the colour.
        near = sum(n for n, rgb in colours if sum(abs(a - b) for a, b in zip(rgb, curve)) < 60)
        assert near > 100, f"colour {curve} of the curves is (almost) missing from the screenshot: {near} pixels"


@pytest.mark.parametrize("width", [WIDTH, 900])
def test_page_does_not_scroll_sideways(report: ReportFiles, tmp_path: Path, width: int) -> None:
    # A copy of the page that writes its widths into the title once laid out (images included).
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => { const e = document.documentElement; "
              "document.title = 'widths ' + e.scrollWidth + ' ' + e.clientWidth; });</script>")
    probe.write_text(report.html.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    done = chromium(tmp_path / "profile", f"--window-size={width},2000", "--virtual-time-budget=5000",
                    "--dump-dom", probe.as_uri())
    found = re.search(r"<title>widths (\d+) (\d+)</title>", done.stdout)
    assert found, f"the page did not report its widths: {done.stdout[:300]!r}"
    scroll_width, client_width = int(found.group(1)), int(found.group(2))
    assert client_width == width
    assert scroll_width <= client_width, f"page is {scroll_width}px wide in a {client_width}px window"
