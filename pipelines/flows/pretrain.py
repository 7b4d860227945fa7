"""`pretrain` flow: one modality's pretrain stage through `dvc repro`, its log streamed to Prefect.

`dvc repro pretrain@<modality>` runs the stage's own command (`d2v pretrain <modality>`) only when
`dvc status` says it is stale, so a flow run skips a model that is up to date exactly as a shell
`dvc repro` would, and DVC records what it ran in dvc.lock. The number of processes and the
multi-node rendezvous reach `d2v pretrain` as environment variables (D2V_NPROC_PER_NODE, D2V_NNODES,
...; d2v/train/launch.py), and it re-launches itself under torchrun when they ask for more than one
process. They are not DVC dependencies: `force=True` re-runs the stage (only it) even when it is
up to date. The stage runs `d2v pretrain --resume` over persisted outputs (dvc.yaml): a retry of
this task, or a re-run after a crash or preemption, continues from the last checkpoint of the same
run (d2v/train/run_identity.py) instead of starting over.

Warm start: `init_checkpoint` is handed to the stage as the environment variable
D2V_INIT_CHECKPOINT (a checkpoint.pt path); the pretrain stage initialises the model weights from it
and starts a fresh optimiser and schedule (see docs/orchestration.md, "Prefect flows"). Like the number
of processes it is not a dependency: a stage that is up to date is not retrained to use it.

Profiles: `profile` names a paper-scale run of `profiles/` (docs/profiles.md). The flow writes it into
the checkout's params.yaml for the world size it launches (nproc_per_node x nnodes; grad_accum keeps
the released effective batch) before `dvc repro`, so DVC records the profile's params in dvc.lock
exactly as `d2v profile apply` + `dvc repro` would by hand. The profile must be for `modality`.

Multi-node: every node runs this flow with the same rendezvous. Node 0 (node_rank unset or 0) goes
through `dvc repro` and records the outputs, which only rank 0 writes; the other nodes run the
stage's command directly, as they hold nothing for DVC to record. Start a multi-node run only when
the stage is stale (or with force=True), or node 0 skips it while the others wait for it.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE

from d2v.layout import Layout
from d2v.train.launch import INIT_CHECKPOINT_ENV, Launch, Rendezvous, default_nproc_per_node
from pipelines.dvc_stages import read_json, stage_command
from pipelines.flows.commands import run_streaming, tool_env
from pipelines.flows.dvc_tasks import dvc_repro
from pipelines.flows.logs import run_logger

PRETRAIN_STAGE = "pretrain"


@task(retries=1, retry_delay_seconds=30, cache_policy=NONE, task_run_name="{target} (worker node)")
def run_worker_node(root: str, target: str, env: dict[str, str]) -> None:
    """A non-zero node of a multi-node run: the stage's own command, outside DVC."""
    cmd = stage_command(Path(root), target)
    run_logger().info("$ %s", cmd)
    run_streaming(["bash", "-c", cmd], Path(root), run_logger().info, env=tool_env(env))


def stage_env(launch: Launch, init_checkpoint: str | None) -> dict[str, str]:
    """What `d2v pretrain` reads from its environment: processes, rendezvous, warm start."""
    extra = {INIT_CHECKPOINT_ENV: str(Path(init_checkpoint).resolve())} if init_checkpoint else {}
    return {**launch.to_env(), **extra}


@task(cache_policy=NONE, task_run_name="apply profile {profile}")
def apply_run_profile(root: str, profile: str, modality: str, gpus: int) -> list[str]:
    """Write `profile` into root/params.yaml for `gpus` processes; returns the changed keys."""
    from d2v.errors import ConfigError
    from d2v.profiles.apply import apply_profile
    from d2v.profiles.catalog import find_profile

    params_path = Path(root) / "params.yaml"
    found = find_profile(profile, Path(root) / "profiles")
    if found.modality != modality:
        raise ConfigError(f"profile {profile!r} is for {found.modality}, but this flow pretrains {modality}")
    plan = apply_profile(found, params_path, gpus)
    run_logger().info("profile %s on %d GPU(s): %d keys of %s changed", profile, gpus, len(plan.changes), params_path)
    return [change.key for change in plan.changes]


def _fixed_nodes(nnodes: str) -> int:
    """The node count of a fixed-size run ('2'); an elastic range ('1:4') has no fixed world size."""
    if not nnodes.isdigit():
        from d2v.errors import ConfigError

        raise ConfigError(f"nnodes {nnodes!r}: a profile needs a fixed node count to keep its effective batch")
    return int(nnodes)


@flow(name="pretrain", log_prints=True)
def pretrain_flow(
    modality: str = "image",
    root: str = ".",
    nproc_per_node: int | None = None,
    nnodes: str = "1",
    node_rank: int | None = None,
    rdzv_backend: str = "c10d",
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
    init_checkpoint: str | None = None,
    force: bool = False,
    profile: str | None = None,
) -> dict:
    """Pretrain one modality (if stale); returns its metrics summary (metrics/pretrain/<modality>/metrics.json).

    nproc_per_node: processes on this machine; default one per visible GPU (1 on CPU).
    """
    rdzv = Rendezvous(nnodes, node_rank, rdzv_backend, rdzv_endpoint, rdzv_id)
    launch = Launch(nproc_per_node if nproc_per_node is not None else default_nproc_per_node(), rdzv)
    target = f"{PRETRAIN_STAGE}@{modality}"
    env = stage_env(launch, init_checkpoint)
    if profile:
        apply_run_profile(root, profile, modality, launch.nproc_per_node * _fixed_nodes(nnodes))
    if not rdzv.standalone and node_rank:
        run_worker_node(root, target, env)
        return {}
    dvc_repro(root, [target], force=force, single_item=force, env=env)
    return dict(read_json(Layout.of_checkout(root).pretrain_summary(modality)))
