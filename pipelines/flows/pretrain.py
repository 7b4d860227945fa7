"""`pretrain` flow: one modality's pretrain stage under torchrun, its log streamed to Prefect.

The command is the stage's own (`d2v pretrain <modality>` from dvc.yaml) launched as
`torchrun ... -m d2v.cli pretrain <modality>`; afterwards `dvc commit pretrain@<modality>` records
the checkpoint and metrics in dvc.lock as `dvc repro` would have (a repro cannot be used: DVC runs a
stage's `cmd` itself, without torchrun). Returns metrics/pretrain/<modality>.json.

Warm start: `init_checkpoint` is handed to the stage as the environment variable
D2V_INIT_CHECKPOINT (a checkpoint.pt path); the pretrain stage initialises the model weights from it
and starts a fresh optimiser and schedule (see docs/orchestration.md, "Prefect flows").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE

from d2v.errors import D2VError
from pipelines.flows.logs import run_logger
from pipelines.flows.commands import run_streaming, tool_env
from pipelines.flows.dvc_stages import d2v_args, dvc_commit, read_json, stage_command

INIT_CHECKPOINT_ENV = "D2V_INIT_CHECKPOINT"


@dataclass(frozen=True)
class Rendezvous:
    """torchrun's multi-node settings; nnodes == "1" means a single machine (--standalone)."""

    nnodes: str = "1"              # "N" or elastic "MIN:MAX"
    node_rank: int | None = None   # static rendezvous only; c10d assigns ranks itself
    backend: str = "c10d"
    endpoint: str | None = None    # host:port of the rendezvous (node 0), e.g. trainer-0:29400
    run_id: str | None = None      # the same id on every node of one job

    @property
    def standalone(self) -> bool:
        return self.nnodes == "1"


def default_nproc_per_node() -> int:
    """One process per visible GPU; 1 on CPU (more CPU ranks only share the same cores)."""
    import torch  # lazily: seconds to import, and only the pretrain flow needs it

    return torch.cuda.device_count() or 1


def torchrun_command(cli_args: list[str], nproc_per_node: int, rdzv: Rendezvous) -> list[str]:
    if nproc_per_node < 1:
        raise D2VError(f"nproc_per_node={nproc_per_node}: expected at least 1")
    cmd = ["torchrun", f"--nproc_per_node={nproc_per_node}"]
    if rdzv.standalone:
        cmd.append("--standalone")
    else:
        if not rdzv.endpoint or not rdzv.run_id:
            raise D2VError(f"nnodes={rdzv.nnodes}: multi-node torchrun needs rdzv_endpoint "
                           "(host:port of node 0) and rdzv_id (shared by every node)")
        cmd += [f"--nnodes={rdzv.nnodes}", f"--rdzv_backend={rdzv.backend}",
                f"--rdzv_endpoint={rdzv.endpoint}", f"--rdzv_id={rdzv.run_id}"]
        if rdzv.node_rank is not None:
            cmd.append(f"--node_rank={rdzv.node_rank}")
    return [*cmd, "-m", "d2v.cli", *cli_args]


@task(retries=1, retry_delay_seconds=30, cache_policy=NONE, task_run_name="torchrun pretrain@{modality}")
def launch_torchrun(root: str, modality: str, nproc_per_node: int, rdzv: Rendezvous,
                    init_checkpoint: str | None = None) -> dict:
    logger = run_logger()
    target = f"pretrain@{modality}"
    cmd = torchrun_command(d2v_args(stage_command(Path(root), target), target), nproc_per_node, rdzv)
    extra = {INIT_CHECKPOINT_ENV: str(Path(init_checkpoint).resolve())} if init_checkpoint else {}
    logger.info("$ %s%s", " ".join(cmd), f"  ({INIT_CHECKPOINT_ENV}={extra[INIT_CHECKPOINT_ENV]})" if extra else "")
    run_streaming(cmd, Path(root), logger.info, env=tool_env(extra))
    return dict(read_json(Path(root) / "metrics" / "pretrain" / f"{modality}.json"))


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
    commit: bool = True,
) -> dict:
    """Pretrain one modality; returns its metrics summary (metrics/pretrain/<modality>.json)."""
    rdzv = Rendezvous(nnodes, node_rank, rdzv_backend, rdzv_endpoint, rdzv_id)
    nproc = nproc_per_node if nproc_per_node is not None else default_nproc_per_node()
    metrics = launch_torchrun(root, modality, nproc, rdzv, init_checkpoint)
    # On a multi-node job only the first node holds rank 0's outputs (checkpoint, metrics).
    if commit and (rdzv.standalone or not node_rank):
        dvc_commit(root, [f"pretrain@{modality}"])
    return metrics
