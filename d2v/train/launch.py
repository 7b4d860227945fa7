"""How `d2v pretrain` runs on several processes: it re-launches itself under torchrun.

`d2v pretrain <modality> --nproc-per-node N` with N > 1, or with multi-node rendezvous options,
starts `torchrun --standalone --nproc_per_node=N -m d2v.cli pretrain <modality> ...` as a child
process and waits for it; every rank then runs `d2v pretrain` as one process of the group (torchrun
sets LOCAL_RANK, which stops the re-launch). So DVC (dvc.yaml's `cmd`) and the Prefect flows
(through `dvc repro`) start a pretraining run the same way, whatever the number of processes.

The options default to environment variables; that is how a Prefect flow hands them through
`dvc repro` to the stage:

    D2V_NPROC_PER_NODE   processes on this machine (default 1)
    D2V_NNODES           machines: "N" or elastic "MIN:MAX" (default "1": torchrun --standalone)
    D2V_NODE_RANK        this machine's rank (static rendezvous only; c10d assigns ranks itself)
    D2V_RDZV_BACKEND     rendezvous backend (default c10d)
    D2V_RDZV_ENDPOINT    host:port of the rendezvous (node 0), e.g. trainer-0:29400
    D2V_RDZV_ID          job id, the same on every machine
    D2V_INIT_CHECKPOINT  warm start: initial weights from this checkpoint.pt (one process or many)

The number of processes changes the effective batch (batch_size x grad_accum x world size) but is
not a DVC dependency: after changing it, force the stage (`dvc repro --force pretrain@<modality>`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from d2v.errors import D2VError

INIT_CHECKPOINT_ENV = "D2V_INIT_CHECKPOINT"  # warm start (the Prefect retrain flow sets it)
NPROC_ENV = "D2V_NPROC_PER_NODE"
NNODES_ENV = "D2V_NNODES"
NODE_RANK_ENV = "D2V_NODE_RANK"
RDZV_BACKEND_ENV = "D2V_RDZV_BACKEND"
RDZV_ENDPOINT_ENV = "D2V_RDZV_ENDPOINT"
RDZV_ID_ENV = "D2V_RDZV_ID"
# torchrun's own entry point under this interpreter: the `torchrun` script may not be on PATH.
TORCHRUN = (sys.executable, "-m", "torch.distributed.run")


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


@dataclass(frozen=True)
class Launch:
    """How many processes run one pretraining, and how they meet."""

    nproc_per_node: int = 1
    rdzv: Rendezvous = field(default_factory=Rendezvous)

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise D2VError(f"nproc_per_node={self.nproc_per_node}: expected at least 1")

    @property
    def needs_torchrun(self) -> bool:
        return self.nproc_per_node > 1 or not self.rdzv.standalone

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Launch:
        env = os.environ if env is None else env
        rank = env.get(NODE_RANK_ENV)
        rdzv = Rendezvous(
            nnodes=env.get(NNODES_ENV) or "1",
            node_rank=None if not rank else _env_int(NODE_RANK_ENV, rank),
            backend=env.get(RDZV_BACKEND_ENV) or "c10d",
            endpoint=env.get(RDZV_ENDPOINT_ENV) or None,
            run_id=env.get(RDZV_ID_ENV) or None,
        )
        return cls(_env_int(NPROC_ENV, env.get(NPROC_ENV) or "1"), rdzv)

    def to_env(self) -> dict[str, str]:
        """The environment that makes `d2v pretrain` (e.g. run by `dvc repro`) launch like this."""
        return {NPROC_ENV: str(self.nproc_per_node), NNODES_ENV: self.rdzv.nnodes,
                  RDZV_BACKEND_ENV: self.rdzv.backend, NODE_RANK_ENV: _str(self.rdzv.node_rank),
                  RDZV_ENDPOINT_ENV: _str(self.rdzv.endpoint), RDZV_ID_ENV: _str(self.rdzv.run_id)}


def _str(value: object) -> str:
    return "" if value is None else str(value)


def _env_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise D2VError(f"environment variable {name}={raw!r}: expected an integer") from None


def under_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """True inside a rank that torchrun (or another launcher of a process group) started."""
    env = os.environ if env is None else env
    return "LOCAL_RANK" in env or "TORCHELASTIC_RUN_ID" in env


def torchrun_command(cli_args: Sequence[str], launch: Launch) -> list[str]:
    """`torchrun ... -m d2v.cli <cli_args>` for `launch`."""
    rdzv = launch.rdzv
    cmd = [*TORCHRUN, f"--nproc_per_node={launch.nproc_per_node}"]
    if rdzv.standalone:
        cmd.append("--standalone")
    else:
        if not rdzv.endpoint or not rdzv.run_id:
            raise D2VError(f"nnodes={rdzv.nnodes}: multi-node torchrun needs a rendezvous endpoint "
                           f"(host:port of node 0; --rdzv-endpoint or {RDZV_ENDPOINT_ENV}) and a job id "
                           f"shared by every node (--rdzv-id or {RDZV_ID_ENV})")
        cmd += [f"--nnodes={rdzv.nnodes}", f"--rdzv_backend={rdzv.backend}",
                f"--rdzv_endpoint={rdzv.endpoint}", f"--rdzv_id={rdzv.run_id}"]
        if rdzv.node_rank is not None:
            cmd.append(f"--node_rank={rdzv.node_rank}")
    return [*cmd, "-m", "d2v.cli", *cli_args]


def run_torchrun(cli_args: Sequence[str], launch: Launch) -> int:
    """Run `d2v <cli_args>` under torchrun and wait; returns torchrun's exit status."""
    cmd = torchrun_command(cli_args, launch)
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


def default_nproc_per_node() -> int:
    """One process per visible GPU; 1 on CPU (more CPU ranks only share the same cores)."""
    import torch  # lazily: seconds to import

    return torch.cuda.device_count() or 1


__all__ = ["INIT_CHECKPOINT_ENV", "Launch", "NNODES_ENV", "NODE_RANK_ENV", "NPROC_ENV", "RDZV_BACKEND_ENV", "RDZV_ENDPOINT_ENV",
           "RDZV_ID_ENV", "Rendezvous", "default_nproc_per_node", "run_torchrun", "torchrun_command",
           "under_torchrun"]
