"""`benchmark` flow: data -> pretrain -> evaluate -> report -> publish, plus a markdown artifact.

`stages` lists what follows the data stages, by dvc.yaml name: `pretrain` goes through the pretrain
flow (torchrun), `evaluate` through the evaluate flow (concurrent), anything else (`report`, a stage
added later) through `dvc repro`. Each modality's outputs are published as run `<run_id>-<modality>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from d2v import MODALITIES
from d2v.artifacts.store import new_run_id
from pipelines.flows.logs import run_logger
from pipelines.flows.data import DATA_STAGES, data_flow
from pipelines.flows.dvc_stages import available_stages, dvc_repro, expand_stages
from pipelines.flows.evaluate import EVAL_STAGE, evaluate_flow
from pipelines.flows.pretrain import pretrain_flow
from pipelines.flows.publish import PUBLISH_PATHS, publish_run, store_config

PIPELINE_STAGES = ["pretrain", EVAL_STAGE, "report"]
REPORT_MD = Path("reports") / "benchmark.md"


def run_stages(
    root: str,
    modalities: list[str],
    stages: list[str],
    nproc_per_node: int | None,
    eval_mode: Literal["concurrent", "dvc"],
    init_checkpoints: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Run the post-data stages in order; returns {"pretrain": {m: metrics}, "evaluate": {m: records}}."""
    results: dict[str, Any] = {}
    available = available_stages(Path(root))
    for stage in stages:
        if stage == "pretrain":
            results["pretrain"] = {
                m: pretrain_flow(modality=m, root=root, nproc_per_node=nproc_per_node,
                                 init_checkpoint=(init_checkpoints or {}).get(m))
                for m in modalities
            }
        elif stage == EVAL_STAGE:
            results["evaluate"] = evaluate_flow(root=root, modalities=modalities, mode=eval_mode)
        else:
            dvc_repro(root, expand_stages([stage], modalities, available))
            results[stage] = {"ran": True}
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
    report = Path(root) / REPORT_MD
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
    eval_mode: Literal["concurrent", "dvc"] = "concurrent",
    publish: bool = True,
    publish_paths: list[str] = PUBLISH_PATHS,
    artifacts_uri: str | None = None,
    artifacts_endpoint_url: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The whole benchmark; returns the stage results and the published runs per modality."""
    logger = run_logger()
    versions = data_flow(root=root, modalities=modalities, stages=data_stages)
    results = run_stages(root, modalities, stages, nproc_per_node, eval_mode)
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
