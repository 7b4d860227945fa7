"""`benchmark` flow: data -> pretrain -> evaluate -> report -> publish, plus a markdown artifact.

`stages` lists what follows the data stages, by dvc.yaml name: `pretrain` goes through the pretrain
flow (processes, warm start), `evaluate` through the evaluate flow, anything else (`report`, a stage
added later) straight through `dvc repro`. Every stage runs through `dvc repro`, so a second run
with nothing changed retrains nothing. Each modality's outputs are published as run
`<run_id>-<modality>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from d2v.artifacts.store import new_run_id
from d2v.layout import MODALITIES, Layout
from pipelines.dvc_stages import available_stages, expand_stages
from pipelines.flows.logs import run_logger
from pipelines.flows.data import DATA_STAGES, data_flow
from pipelines.flows.dvc_tasks import dvc_repro
from pipelines.flows.evaluate import EVAL_STAGE, evaluate_flow
from pipelines.flows.pretrain import PRETRAIN_STAGE, pretrain_flow
from pipelines.flows.publish import publish_run, store_config

PIPELINE_STAGES = [PRETRAIN_STAGE, EVAL_STAGE, "report"]


def run_stages(
    root: str,
    modalities: list[str],
    stages: list[str],
    nproc_per_node: int | None,
    init_checkpoints: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Run the post-data stages in order (each through `dvc repro`, skipped when up to date);
    returns {"pretrain": {m: metrics}, "evaluate": {m: records}, "<other stage>": {"reproduced": [...]}}."""
    results: dict[str, Any] = {}
    available = available_stages(Path(root))
    for stage in stages:
        if stage == PRETRAIN_STAGE:
            results["pretrain"] = {
                m: pretrain_flow(modality=m, root=root, nproc_per_node=nproc_per_node,
                                 init_checkpoint=(init_checkpoints or {}).get(m))
                for m in modalities
            }
        elif stage == EVAL_STAGE:
            results["evaluate"] = evaluate_flow(root=root, modalities=modalities)
        else:
            results[stage] = {"reproduced": dvc_repro(root, expand_stages([stage], modalities, available))}
    return results


def summary_markdown(title: str, results: dict[str, Any], published: dict[str, dict]) -> str:
    """A compact table for the Prefect UI when the pipeline has no report stage (or on top of it)."""
    lines = [f"# {title}", "", "| modality | pretrain steps | final loss | primary metric | pretrained "
             "| random init | run |", "|---|---|---|---|---|---|---|"]
    for m in sorted(set(results.get("pretrain", {})) | set(results.get("evaluate", {})) | set(published)):
        pre = results.get("pretrain", {}).get(m, {})
        records = results.get("evaluate", {}).get(m) or [{}]
        first = records[0]
        metric = f"{first.get('task', '-')}/{first.get('metric', '-')}" if first else "-"
        lines.append(f"| {m} | {pre.get('steps', '-')} | {_fmt(pre.get('final_loss_avg'))} | {metric} "
                     f"| {_fmt(first.get('pretrained'))} | {_fmt(first.get('random_init'))} "
                     f"| {published.get(m, {}).get('uri', '-')} |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def publish_report_artifact(root: str, title: str, results: dict[str, Any], published: dict[str, dict]) -> str:
    """The report stage's Markdown when it ran in this flow run, else the summary table, as a Prefect
    artifact (a report.md left from an earlier run, or committed, would describe other results)."""
    report = Layout.of_checkout(root).report_markdown
    if "report" in results and report.is_file():
        markdown = report.read_text(encoding="utf-8")
    else:
        markdown = summary_markdown(title, results, published)
    create_markdown_artifact(markdown=markdown, key="d2v-benchmark-report", description=title)
    return markdown


@flow(name="benchmark", log_prints=True)
def benchmark_flow(
    root: str = ".",
    modalities: list[str] = list(MODALITIES),
    data_stages: list[str] = DATA_STAGES,
    stages: list[str] = PIPELINE_STAGES,
    nproc_per_node: int | None = None,
    publish: bool = True,
    publish_paths: list[str] | None = None,
    artifacts_uri: str | None = None,
    artifacts_endpoint_url: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The whole benchmark; returns the stage results and the published runs per modality.

    publish_paths: repository paths per run, `{modality}` filled in; default d2v.layout's run files.
    """
    logger = run_logger()
    versions = data_flow(root=root, modalities=modalities, stages=data_stages)
    results = run_stages(root, modalities, stages, nproc_per_node)
    published: dict[str, dict] = {}
    if publish:
        cfg = store_config(Path(root), artifacts_uri, artifacts_endpoint_url)
        base = run_id or new_run_id()
        for m in modalities:
            extra = {"flow": "benchmark", "flow_run_id": str(flow_run.id), "data_version": versions.get(m),
                     "stages": stages}
            published[m] = publish_run(root, cfg, f"{base}-{m}", m, publish_paths, extra)
    publish_report_artifact(root, "d2v benchmark", results, published)
    logger.info("benchmark done: %s", {m: p["uri"] for m, p in published.items()})
    return {"data_versions": versions, **results, "published": published}
