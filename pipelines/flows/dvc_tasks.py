"""`dvc repro` as a Prefect task: the one way the flows run a DVC stage.

What is up to date is skipped exactly as a `dvc repro` in a shell would skip it; the task returns
the stages that actually ran. The Prefect-free parts (stage lists, commands) are in
pipelines/dvc_stages.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from pipelines.dvc_stages import repro_command, reproduced_stages
from pipelines.flows.commands import run_streaming, tool_env
from pipelines.flows.logs import run_logger


@task(retries=2, retry_delay_seconds=10, cache_policy=NONE, task_run_name="dvc repro {targets}")
def dvc_repro(root: str, targets: list[str], force: bool = False, single_item: bool = False,
              env: Mapping[str, str] | None = None) -> list[str]:
    """`dvc repro [--force] [--single-item] <targets>` with `env` added for the stage commands;
    returns the stages that ran. Retried: downloads fail transiently."""
    logger = run_logger()
    cmd = repro_command(targets, force, single_item)
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items() if v)
    logger.info("$ %s%s", " ".join(cmd), f"  ({shown})" if shown else "")
    ran: list[str] = []

    def on_line(line: str) -> None:
        ran.extend(reproduced_stages([line]))  # only these lines are kept: training logs are long
        logger.info("%s", line)

    run_streaming(cmd, Path(root), on_line, env=tool_env(env))
    logger.info("reproduced: %s", ", ".join(ran) if ran else f"nothing ({', '.join(targets)} up to date)")
    return ran


__all__ = ["dvc_repro"]
