"""`retrain` flow (scheduled): refresh data, pretrain, evaluate, champion/challenger, publish.

Per modality the candidate's primary score (first record of metrics/eval/<modality>.json, or the
pretraining loss where no evaluate stage runs) is compared with the champion's: re-scored by the
same evaluation on the same data (pipelines/flows/rescore.py) when scores come from evaluation and
the champion run has a checkpoint, otherwise the score recorded on the champion pointer. The
candidate is promoted only if not worse. Every candidate is published, promoted or not, with the
decision, both scores and where the champion's came from in the manifest's `extra`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.store import new_run_id
from d2v.layout import MODALITIES, Layout
from pipelines.flows.logs import run_logger
from pipelines.flows.benchmark import PIPELINE_STAGES, publish_report_artifact, run_stages
from pipelines.flows.data import DATA_STAGES, REFRESH_STAGES, data_flow
from pipelines.flows.decision import Decision, Score, decide, pretrain_loss_score, primary_eval_score
from pipelines.flows.evaluate import EVAL_STAGE
from pipelines.flows.rescore import ChampionScore, Evaluator, champion_score, evaluate_checkpoint
from pipelines.flows.publish import (
    current_champion,
    fetch_champion_checkpoint,
    promote,
    publish_outputs,
    store_config,
)


def candidate_score(root: Path, modality: str, score_from: Literal["eval", "pretrain"]) -> Score:
    layout = Layout.of_checkout(root)
    if score_from == "eval":
        return primary_eval_score(layout.eval_metrics(modality))
    return pretrain_loss_score(layout.pretrain_summary(modality))


# No task retries: the store already retries transient S3 errors, and a blind retry after a
# successful publish would publish the candidate twice.
@task(cache_policy=NONE, task_run_name="judge and publish {modality}")
def judge_and_publish(
    root: str,
    cfg: ArtifactsConfig,
    run_id: str,
    modality: str,
    score_from: Literal["eval", "pretrain"],
    publish_paths: list[str] | None,
    extra: dict[str, Any],
    rescore_champion: bool = True,
    evaluate: Evaluator = evaluate_checkpoint,
) -> tuple[Decision, dict[str, Any]]:
    """Compare the fresh model with the champion, publish it with the decision, promote if not worse."""
    candidate = candidate_score(Path(root), modality, score_from)
    champion = current_champion(cfg, modality)
    against: ChampionScore | None = None
    if champion is not None:
        if rescore_champion and score_from == "eval":
            against = champion_score(Path(root), cfg, modality, champion[0], champion[1], evaluate)
        else:
            reason = "re-scoring off" if not rescore_champion else "pretraining loss is not re-scored"
            against = ChampionScore(champion[1], False, f"recorded at promotion ({reason})")
    decision = decide(candidate, None if against is None else against.score)
    record = {**extra, **decision.as_record(), "champion_run_id": None if champion is None else champion[0],
              **({} if against is None else against.as_record()),
              **({} if champion is None else {"champion_recorded": {"metric": champion[1].name,
                                                                    "value": champion[1].value}})}
    published = publish_outputs(root, cfg, run_id, modality, publish_paths, record)
    if decision.promote:
        promote(cfg, published["run_id"], modality, candidate, None if champion is None else champion[0])
    run_logger().info("%s: %s (%s)", modality, record["decision"], decision.reason)
    return decision, published


@flow(name="retrain", log_prints=True)
def retrain_flow(
    root: str = ".",
    modalities: list[str] = list(MODALITIES),
    data_stages: list[str] = DATA_STAGES,
    refresh: bool = True,
    refresh_stages: list[str] = REFRESH_STAGES,
    stages: list[str] = PIPELINE_STAGES,
    warm_start: bool = False,
    nproc_per_node: int | None = None,
    score_from: Literal["auto", "eval", "pretrain"] = "auto",
    publish_paths: list[str] | None = None,
    artifacts_uri: str | None = None,
    artifacts_endpoint_url: str | None = None,
    run_id: str | None = None,
    rescore_champion: bool = True,
) -> dict[str, dict]:
    """Retrain every modality and keep the better of candidate and champion; {modality: decision}."""
    cfg = store_config(Path(root), artifacts_uri, artifacts_endpoint_url)
    versions = data_flow(root=root, modalities=modalities, stages=data_stages, refresh=refresh,
                         refresh_stages=refresh_stages)
    # Champion checkpoints go to a temporary directory: they are inputs, not outputs of the repo.
    warm_dir = tempfile.mkdtemp(prefix="d2v-warm-start-") if warm_start else ""
    init = {m: fetch_champion_checkpoint(root, cfg, m, warm_dir) for m in modalities} if warm_start else {}
    results = run_stages(root, modalities, stages, nproc_per_node, init)
    source: Literal["eval", "pretrain"] = (
        ("eval" if EVAL_STAGE in stages else "pretrain") if score_from == "auto" else score_from)
    base = run_id or new_run_id()
    decisions: dict[str, dict] = {}
    published: dict[str, dict] = {}
    for m in modalities:
        extra = {"flow": "retrain", "flow_run_id": str(flow_run.id), "data_version": versions.get(m),
                 "warm_start_from": init.get(m), "stages": stages}
        decision, published[m] = judge_and_publish(root, cfg, f"{base}-{m}", m, source, publish_paths, extra,
                                                       rescore_champion)
        decisions[m] = {**decision.as_record(), "run_id": published[m]["run_id"]}
    publish_report_artifact(root, "d2v retrain", results, published)
    return decisions
