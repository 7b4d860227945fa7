"""`evaluate` flow: the evaluate stages, concurrently, then recorded in dvc.lock.

Why not `dvc repro evaluate@image evaluate@text ...` in parallel tasks: `dvc repro` holds the
repository lock for the whole run of its stages, so a second repro in the same workspace fails with
"Unable to acquire lock" (and one repro of several targets runs them one after another). The
evaluate stages only read their inputs and write disjoint outputs (metrics/eval/<modality>...), so
the flow runs each stage's own command (read from dvc.yaml) in a concurrent task, and afterwards one
`dvc commit` records all their outputs, as the repro would have. `mode="dvc"` instead runs them
sequentially through `dvc repro` (which also re-runs anything stale upstream).

Returns the records of metrics/eval/<modality>.json per modality ({task, metric, pretrained,
random_init, delta, n_train, n_test, wall_time_s}); the first is the modality's primary metric.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.futures import wait

from d2v import MODALITIES
from pipelines.flows.logs import run_logger
from pipelines.flows.commands import run_streaming, tool_env
from pipelines.flows.decision import eval_records
from pipelines.flows.dvc_stages import dvc_commit, dvc_repro, stage_command

EVAL_STAGE = "evaluate"


def eval_metrics_path(root: Path, modality: str) -> Path:
    return root / "metrics" / "eval" / f"{modality}.json"


def threads_per_process(n_concurrent: int) -> str:
    """Split the cores between concurrent stages so that they do not oversubscribe the CPU."""
    return str(max(1, (os.cpu_count() or 1) // max(1, n_concurrent)))


@task(retries=1, retry_delay_seconds=10, cache_policy=NONE, task_run_name="{target}")
def run_stage_command(root: str, target: str, threads: str) -> None:
    logger = run_logger()
    cmd = stage_command(Path(root), target)
    logger.info("$ %s  (OMP_NUM_THREADS=%s)", cmd, threads)
    env = tool_env({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)})
    run_streaming(["bash", "-c", cmd] if _needs_shell(cmd) else shlex.split(cmd), Path(root),
                  logger.info, env=env)


def _needs_shell(cmd: str) -> bool:
    return any(ch in cmd for ch in "|&;<>$`")


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    root: str = ".",
    modalities: list[str] = list(MODALITIES),
    stage: str = EVAL_STAGE,
    mode: Literal["concurrent", "dvc"] = "concurrent",
) -> dict[str, list]:
    """Evaluate every modality; returns {modality: records of metrics/eval/<modality>.json}."""
    targets = [f"{stage}@{m}" for m in modalities]
    if mode == "dvc":
        for target in targets:
            dvc_repro(root, [target])
    else:
        threads = threads_per_process(len(targets))
        futures = [run_stage_command.submit(root, t, threads) for t in targets]
        wait(futures)  # let every stage finish before reporting the first failure
        for future in futures:
            future.result()
        dvc_commit(root, targets)
    return {m: eval_records(eval_metrics_path(Path(root), m)) for m in modalities}
