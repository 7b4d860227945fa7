from __future__ import annotations

import base64
import subprocess
import sys
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from report_tree import DVC_LOCK, Tree, make_tree, write_speech

from d2v.cli import main
from d2v import cpu_limit
from d2v.config import load_params
from d2v.report import ReportFiles, build_report
from d2v.report.build import FIGURES_DIR
from d2v.report.document import Document
from d2v.report.inputs import collect_all
from d2v.report.markdown import render_markdown
from d2v.report.provenance import collect_run_provenance
from d2v.report.provenance_section import provenance_section
from d2v.report.sections import ReportContext

SECTIONS = ("Summary", "Pretraining", "Pretraining health", "Downstream evaluation", "Paper reference numbers",
            "Throughput and wall time per stage", "Data validation", "Provenance")
WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def build(tree: Tree, now: datetime = WHEN, out: str = "reports") -> tuple[ReportFiles, str, str]:
    files = build_report(load_params(tree.params), "params.yaml", out_dir=out, root=tree.root, now=now)
    return files, files.markdown.read_text(encoding="utf-8"), files.html.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, ReportFiles, str, str]:
    """One report shared by the read-only tests (building draws figures: about a second)."""
    tree = make_tree(tmp_path_factory.mktemp("built"))
    stale = tree.root / "reports" / FIGURES_DIR / "pretrain_speech.png"  # left by an earlier run with speech
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    return (tree, *build(tree))


def md_row(markdown: str, first_cell: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |"))


def test_every_section_holds_the_numbers_from_the_files(built: tuple[Tree, ReportFiles, str, str]) -> None:
    tree, files, md, html = built
    for title in SECTIONS:
        assert f"## {title}" in md and f">{title}</h2>" in html
    assert "Generated at 2030-01-02 03:04:05 UTC." in md
    # Summary: the main task per modality, pretrained vs random init, delta (in percent points).
    # Ahead of random init, behind raw pixels: the verdict says it is not a result yet.
    assert md_row(md, "image").split(" | ")[-4:] == ["79.12", "65.63", "+13.49",
                                                     "yes; not yet a result: does not beat the input baseline |"]
    assert md_row(md, "image: linear_probe") == ("| image: linear_probe | 79.12 | 83.20 (raw pixels) | -4.08 "
                                                 "| -6.10 … -2.10 | not yet a result: does not beat the input baseline |")
    assert "| text: " not in md  # text.json was written without input baselines: no row
    assert "| text | data2vec 2.0, preset tiny | passed (9/9) | 40 steps, loss 2.0123 → 0.4567 |" in md
    # Pretraining summary values, and a curves figure per modality that ran.
    assert md_row(md, "samples_per_s") == "| samples_per_s | 213.37 | not run | 55.5 |"
    assert md_row(md, "train_time_s") == "| train_time_s | 90.12 | not run | 70 |"
    assert sorted(p.name for p in files.figures) == [
        "confusion_image.png", "pretrain_image.png", "pretrain_rel_loss.png", "pretrain_text.png"]
    assert f"]({FIGURES_DIR}/pretrain_image.png)" in md
    # Downstream: every task, with the GLUE-style average first for text.
    assert md_row(md, "finetune") == ("| finetune | top1 (%), higher is better | 1000 | 1000 | 82.34 | 77.45 | +4.89 "
                                      "| +2.10 … +7.70 | yes | 95.2 |")
    assert md_row(md, "GLUE-style average").startswith("| GLUE-style average | score (%), higher is better | 3000 "
                                                       "| 1500 | 59.80 | 53.10 | +6.70 | — | yes | 93.0 |")
    # Each task against its input baseline, in a table under the modality's table.
    assert md_row(md, "finetune").endswith("| yes | 95.2 |")  # beats raw pixels: no caveat
    assert md_row(md, "linear_probe").endswith("| yes; not yet a result: does not beat the input baseline | 41.5 |")
    start = md.index("| task | pretrained | input baseline |")
    image_baselines = md[start:md.index("### speech", start)]
    assert "| finetune | 82.34 | 69.90 (raw pixels) | +12.44 | +9.30 … +15.50 | yes |" in image_baselines
    assert "| linear_probe | 79.12 | 83.20 (raw pixels) | -4.08 | -6.10 … -2.10 | not yet a result" in image_baselines
    assert md.count("| task | pretrained | input baseline |") == 1  # text has none to show
    assert "not yet a result: does not beat the input baseline" in html
    # Whether each run converged: its final training loss, dashes for runs that kept none.
    assert "| linear_probe | 0.3012 | 0.9000 | — |" in image_baselines
    assert md.count("final training loss of each run") == 1  # only the image records carry losses
    # An interval that contains 0 overrules the sign of delta.
    assert md_row(md, "mrpc").endswith("| +4.70 | -1.20 … +10.50 | within noise | 31.0 |")
    for task, pretrained in (("sst2", "73.10"), ("mrpc", "64.80"), ("supersense", "41.50")):
        assert f" | {pretrained} | " in md_row(md, task)
    # The paper's numbers sit beside ours, labelled with their scale.
    reference = md[md.index("## Paper reference numbers"):md.index("## Throughput")]
    assert "top-1 % — ViT-B/16: 84.2" in reference and "ViT-B/16 (86M parameters)" in reference
    assert "WER % — 10 min: 12.3, 1 h: 9.1, 10 h: 8.1, 100 h: 6.8" in reference and "4-gram LM" in reference
    assert "score % — Base: 82.7" in reference and "not a reproduction" in reference
    assert "linear_probe, top1 %: 79.12" in reference and "GLUE-style average, score %: 59.80" in reference
    # Throughput and wall time per stage.
    assert md_row(md, "pretrain@image") == "| pretrain@image | 213.37 | 90.1 | 60 steps of batch 64 on cpu |"
    # Three runs (the input baseline too) over 4000 examples in 41.5 s.
    assert md_row(md, "evaluate@image: linear_probe") == ("| evaluate@image: linear_probe | 289.16 | 41.5 | pretrained "
                                                          "+ random init + raw pixels, 3000 train / 1000 test examples each |")
    assert "evaluate@text: average" not in md  # the average is no run of its own
    # Provenance: dvc.lock outputs (not the report's own), seeds, versions, hardware, params.
    assert "| prepare@image | data/prepared/image | 0123456789abcdef0123456789abcdef.dir | 55123456 | 8 |" in md
    assert "| pretrain@image | models/image | fedcba9876543210fedcba9876543210.dir | 4321000 | 1 |" in md
    assert "9999999999" not in md
    assert md_row(md, "pretrain.seed (resolved)") == "| pretrain.seed (resolved) | 0 |"
    assert md_row(md, "torch").startswith("| torch | 2.")
    assert md_row(md, "logical cores").startswith("| logical cores | ")
    limit = cpu_limit.limit_cores()  # this machine's own; the report reads the same files
    assert md_row(md, "CPU limit (cgroup)") == f"| CPU limit (cgroup) | {'none' if limit is None else f'{limit:g} cores'} |"
    warmup = f"warmup_steps: {yaml.safe_load(tree.params.read_text())['pretrain']['image']['warmup_steps']}"
    assert warmup in md and warmup in html  # the resolved params, embedded verbatim


def test_a_missing_modality_says_not_run_until_its_files_exist(
    built: tuple[Tree, ReportFiles, str, str], tree: Tree
) -> None:
    _, _, md, html = built
    assert md_row(md, "speech").count("not run") == 3  # validation, pretraining, main task
    assert "speech: not run (no metrics/pretrain/speech/metrics.json)." in md
    assert "speech: not run (no metrics/eval/speech.json)." in md
    assert "| pretrain@speech | not run |" in md and "| evaluate@speech | not run |" in md
    assert "speech: not run (no metrics/eval/speech.json)." in html

    write_speech(tree.root)
    files, md, _ = build(tree)
    assert "not run" not in md
    assert md_row(md, "speech").split(" | ")[-4:] == ["61.20", "84.50", "-23.30", "yes |"]  # lower WER is better
    assert md_row(md, "ctc_cer").startswith("| ctc_cer | cer (%), lower is better | 216 | 72 | 25.00 | 40.00 |")
    assert md.count("| evaluate@speech: ") == 1  # ctc_cer re-scores the ctc runs
    assert "pretrain_speech.png" in {p.name for p in files.figures}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [(name, value or "") for name, value in attrs if name in ("src", "href", "srcset", "data")]


def test_html_is_self_contained(built: tuple[Tree, ReportFiles, str, str]) -> None:
    _, files, _, html = built
    links = _Links()
    links.feed(html)
    assert not {"script", "link", "iframe", "object"} & set(links.tags)
    assert "url(" not in html and "@import" not in html
    sources = [value for name, value in links.urls if name == "src"]
    assert len(sources) == len(files.figures) == 4
    assert all(value.startswith("data:image/png;base64,") for value in sources)
    assert all(value.startswith("#") for name, value in links.urls if name == "href")
    embedded = {base64.b64decode(value.split(",", 1)[1]) for value in sources}
    assert embedded == {path.read_bytes() for path in files.figures}


def test_identical_metrics_give_identical_reports_apart_from_the_time(
    built: tuple[Tree, ReportFiles, str, str]
) -> None:
    tree, first, md1, html1 = built
    second, md2, html2 = build(tree, now=datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc), out="again")

    def without_time(text: str) -> list[str]:
        return [line for line in text.splitlines() if "Generated at" not in line]

    assert md1 != md2 and without_time(md1) == without_time(md2)
    assert html1 != html2 and without_time(html1) == without_time(html2)
    assert [p.read_bytes() for p in first.figures] == [p.read_bytes() for p in second.figures]


def test_outputs_are_complete_files_and_stale_figures_go(built: tuple[Tree, ReportFiles, str, str]) -> None:
    tree, files, _, _ = built
    assert not (tree.root / "reports" / FIGURES_DIR / "pretrain_speech.png").exists()
    out = tree.root / "reports"
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (files.markdown, files.html, *files.figures))


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def provenance_markdown(tree: Tree) -> str:
    """The provenance section alone (no figures to draw)."""
    params = load_params(tree.params)
    ctx = ReportContext(collect_all(tree.root / "metrics", tree.root / "reports" / "validation"), params,
                        Path("metrics"), Path("reports/validation"))
    section = provenance_section(ctx, collect_run_provenance(params, tree.root), "params.yaml")
    return render_markdown(Document("t", "now", (section,)), FIGURES_DIR)


def test_provenance_names_the_commit_and_dirty_flag(tree: Tree) -> None:
    _git(tree.root, "init", "-q")
    _git(tree.root, "add", "params.yaml", "dvc.lock")
    _git(tree.root, "commit", "-q", "-m", "run")
    commit = _git(tree.root, "rev-parse", "HEAD")
    md = provenance_markdown(tree)
    assert md_row(md, "git commit") == f"| git commit | {commit} |"
    assert md_row(md, "working tree dirty") == "| working tree dirty | no |"
    (tree.root / "dvc.lock").write_text(DVC_LOCK + "# edited\n", encoding="utf-8")
    assert md_row(provenance_markdown(tree), "working tree dirty").startswith("| working tree dirty | yes")


def test_cli_prints_where_the_report_is(tree: Tree, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tree.root)
    assert main(["report", "--params", "params.yaml", "--out", "out"]) == 0
    printed = capsys.readouterr().out
    assert "out/benchmark.html" in printed and "out/benchmark.md" in printed
    assert (tree.root / "out" / "benchmark.html").is_file()

    (tree.root / "metrics" / "eval" / "image.json").write_text("{truncated", encoding="utf-8")
    assert main(["report", "--params", "params.yaml", "--out", "out"]) == 2
    assert "metrics/eval/image.json: not valid JSON" in capsys.readouterr().err


def test_the_report_stage_runs_without_torch(tree: Tree) -> None:
    """`d2v report` reads records and draws figures only: with torch made unimportable it still
    writes the report, so the stage does not pay torch's start-up (1.3-6 s a process)."""
    blocked = "import sys; sys.modules['torch'] = None; from d2v.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", blocked, "report", "--params", "params.yaml", "--out", "out"],
                          cwd=tree.root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tree.root / "out" / "benchmark.html").is_file()

