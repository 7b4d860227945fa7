"""dvc.yaml, as DVC resolves it, agrees with d2v/layout.py and params.yaml, and runs only `d2v ...`.

The pipeline's paths are written twice by necessity (dvc.yaml for DVC, d2v/layout.py for the
code): these tests are what keeps the two the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from d2v.layout import MODALITIES, Layout

REPO = Path(__file__).resolve().parents[2]
PER_MODALITY = ("download", "prepare", "validate", "pretrain", "evaluate")
# Params of another modality's section that a stage legitimately reads (speech prompts for the
# ASR set are sentences of the text corpus, found in WordNet).
CROSS_MODALITY_PARAMS = {("prepare@speech", "data.text.wordnet_dir")}


@dataclass(frozen=True)
class StagePaths:
    """One resolved stage: its command and the paths of each kind, as written in dvc.yaml."""

    cmd: str
    deps: frozenset[Path]
    outs: frozenset[Path]      # plain outputs (neither metrics nor plots)
    metrics: frozenset[Path]
    plots: frozenset[Path]
    params: frozenset[str]     # dotted keys of params.yaml; empty for the whole file


def _resolved_stages() -> dict[str, StagePaths]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    found = {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            outs = [(Path(o.def_path), o.metric, o.plot) for o in stage.outs]
            found[stage.addressing] = StagePaths(
                cmd=stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd),
                deps=frozenset(Path(d.def_path) for d in stage.deps if not isinstance(d, ParamsDependency)),
                outs=frozenset(p for p, metric, plot in outs if not metric and not plot),
                metrics=frozenset(p for p, metric, _ in outs if metric),
                plots=frozenset(p for p, _, plot in outs if plot),
                params=frozenset(key for dep in stage.params for key in dep.params),
            )
    return found


@pytest.fixture(scope="module")
def stages() -> dict[str, StagePaths]:
    return _resolved_stages()


@pytest.fixture(scope="module")
def layout() -> Layout:
    return Layout.from_params(REPO / "params.yaml")


def test_the_stages_are_one_per_modality_plus_tokenize_and_report(stages: dict[str, StagePaths]) -> None:
    expected = {f"{name}@{m}" for name in PER_MODALITY for m in MODALITIES} | {"tokenize", "report"}
    assert set(stages) == expected


def test_every_command_is_one_d2v_command(stages: dict[str, StagePaths]) -> None:
    for name, stage in stages.items():
        assert stage.cmd.startswith("d2v "), f"{name}: {stage.cmd!r} does not start with `d2v `"
        assert "python -m pipelines.stages" not in stage.cmd, name
        assert not any(sep in stage.cmd for sep in ("&&", ";", "|")), f"{name}: {stage.cmd!r}"


def _expected(layout: Layout, m: str) -> dict[str, dict[str, set[Path]]]:
    """What each per-modality stage must declare, by d2v/layout.py (deps: at least these)."""
    return {
        f"download@{m}": {"outs": {layout.raw(m)}, "metrics": set(), "plots": set()},
        f"prepare@{m}": {"deps": {layout.raw(m)}, "outs": {layout.prepare_output(m)}, "metrics": set(),
                         "plots": set()},
        f"validate@{m}": {"deps": {layout.prepared(m)}, "outs": {layout.data_docs(m)},
                          "metrics": {layout.validation_report(m)}, "plots": set()},
        f"pretrain@{m}": {"deps": {layout.prepared(m), layout.validation_report(m)},
                          "outs": {layout.checkpoint_dir(m)}, "metrics": {layout.pretrain_summary(m)},
                          "plots": {layout.pretrain_steps(m)}},
        f"evaluate@{m}": {"deps": {layout.checkpoint_dir(m), layout.prepared(m)}, "outs": {layout.eval_metrics(m)},
                          "metrics": {layout.eval_summary(m)}, "plots": {layout.eval_plot(m)}},
    }


def _all_expectations(layout: Layout) -> Iterator[tuple[str, dict[str, set[Path]]]]:
    for m in MODALITIES:
        yield from _expected(layout, m).items()
    yield "tokenize", {"deps": {layout.interim("text")}, "outs": {layout.prepared("text")}}
    yield "report", {"deps": {layout.pretrain_metrics_dir, layout.eval_metrics_dir, layout.validation_dir},
                     "outs": {layout.report_markdown, layout.report_html, layout.report_figures}}


def test_stage_paths_agree_with_the_layout(stages: dict[str, StagePaths], layout: Layout) -> None:
    for name, expected in _all_expectations(layout):
        stage = stages[name]
        missing_deps = expected.get("deps", set()) - stage.deps
        assert not missing_deps, f"{name}: deps lack {sorted(map(str, missing_deps))}"
        for kind in ("outs", "metrics", "plots"):
            if kind in expected:
                assert getattr(stage, kind) == expected[kind], f"{name}: {kind} differ from d2v/layout.py"


def test_data_directories_are_read_from_params(layout: Layout) -> None:
    data = yaml.safe_load((REPO / "params.yaml").read_text())["data"]
    assert (layout.raw_dir, layout.interim_dir, layout.prepared_dir, layout.validation_dir) == tuple(
        Path(data[key]) for key in ("raw_dir", "interim_dir", "prepared_dir", "reports_dir"))
    text = (REPO / "dvc.yaml").read_text()
    for literal in ("data/raw", "data/interim", "data/prepared", "reports/validation"):
        assert literal not in text, f"dvc.yaml spells {literal!r}: use ${{data....}} from params.yaml"


def _has_key(tree: dict, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_params_key_exists_in_params_yaml(stages: dict[str, StagePaths]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in stages.items():
        unknown = sorted(key for key in stage.params if not _has_key(params, key))
        assert not unknown, f"dvc.yaml stage {name}: params {unknown} are not in params.yaml"


def test_params_of_a_modality_stage_name_no_other_modality(stages: dict[str, StagePaths]) -> None:
    for name, stage in stages.items():
        if "@" not in name:
            continue
        own = name.split("@")[1]
        for key in stage.params:
            parts = key.split(".")
            foreign = [p for p in parts[:2] if p in MODALITIES and p != own]
            assert not foreign or (name, key) in CROSS_MODALITY_PARAMS, f"{name} depends on {key}"
    for name in ("validate@image", "validate@text", "pretrain@image", "pretrain@text", "pretrain@speech"):
        assert "data.speech.max_seconds" not in stages[name].params, name
    assert "data.speech.max_seconds" in stages["validate@speech"].params


def test_top_level_plots_name_layout_files(layout: Layout) -> None:
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text()).get("plots", [])
    files: set[Path] = set()
    for entry in plots:
        [(title, spec)] = entry.items()
        y = (spec or {}).get("y")
        files |= {Path(f) for f in y} if isinstance(y, dict) else {Path(title)}
    step_logs = {layout.pretrain_steps(m) for m in MODALITIES}
    unknown = {f for f in files if f.parent not in step_logs and f not in {layout.eval_plot(m) for m in MODALITIES}}
    assert files and not unknown, sorted(map(str, unknown))


def test_top_level_plots_of_the_step_logs_name_logged_columns(layout: Layout) -> None:
    from d2v.train.metrics import STEP_COLUMNS

    step_logs = {layout.pretrain_steps(m) for m in MODALITIES}
    plotted: set[str] = set()
    for entry in yaml.safe_load((REPO / "dvc.yaml").read_text()).get("plots", []):
        [(_, spec)] = entry.items()
        y = (spec or {}).get("y")
        for path, columns in (y.items() if isinstance(y, dict) else ()):
            if Path(path).parent in step_logs:
                # DVCLive: one file per metric, named after it, holding step<TAB><metric>.
                assert columns == Path(path).stem, f"{path} holds {Path(path).stem}, not {columns}"
                plotted.add(columns)
                assert spec.get("x", "step") == "step", entry
    assert {"loss", "rel_loss"} <= plotted and plotted <= set(STEP_COLUMNS), sorted(plotted - set(STEP_COLUMNS))
