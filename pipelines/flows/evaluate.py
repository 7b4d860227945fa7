"""`evaluate` flow: the evaluate stages through `dvc repro`, one task per modality.

Each `dvc repro evaluate@<modality>` runs only when `dvc status` says the stage is stale, and DVC
records what it ran in dvc.lock. The stages run one after another: `dvc repro` holds the
repository lock for its whole run, so repros in one workspace cannot overlap. Within a stage the
pretrained and random-init runs share the cores (params: evaluate.side_by_side).

Returns the records of metrics/eval/<modality>.json per modality ({task, metric, pretrained,
random_init, delta, n_train, n_test, wall_time_s}); the first is the modality's primary metric.
`force=True` re-runs the evaluate stages (only them) even when they are up to date.
"""

from __future__ import annotations

from prefect import flow

from d2v.layout import MODALITIES, Layout
from pipelines.flows.decision import eval_records
from pipelines.flows.dvc_tasks import dvc_repro

EVAL_STAGE = "evaluate"


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    root: str = ".",
    modalities: list[str] = list(MODALITIES),
    stage: str = EVAL_STAGE,
    force: bool = False,
) -> dict[str, list]:
    """Evaluate every modality (what is stale); returns {modality: records of metrics/eval/<modality>.json}."""
    for modality in modalities:
        dvc_repro(root, [f"{stage}@{modality}"], force=force, single_item=force)
    layout = Layout.of_checkout(root)
    return {m: eval_records(layout.eval_metrics(m)) for m in modalities}
