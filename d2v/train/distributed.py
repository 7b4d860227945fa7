"""DDP under torchrun: process-group setup from the environment, rank helpers, the resumable sampler.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs as a single process
(world size 1) with the same code path, so a single-process run and a 1-rank run agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from d2v.errors import D2VError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        message = f"environment variable {name}={raw!r}: expected an integer (set by torchrun)"
        raise D2VError(message) from None


def init_distributed() -> DistEnv:
    """Join the torchrun process group if launched by it (NCCL on CUDA, gloo on CPU)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's `obj`, in rank order (used for per-rank RNG states in checkpoints)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_flag(flag: bool, env: DistEnv) -> bool:
    """Rank 0's decision, shared with every rank (e.g. whether a checkpoint exists to resume from)."""
    if not env.distributed:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (tensor, or dicts / lists / tuples of them) on this process's device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded by seed + epoch) that can start part-way into an epoch.

    `set_position(epoch, skip_batches)` drops the first `skip_batches * batch_size` indices of this
    rank's share, so a resumed run sees exactly the batches the interrupted one had not yet seen.
    """

    def __init__(self, dataset: Sized, env: DistEnv, seed: int, batch_size: int) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=env.world_size,
            rank=env.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.batch_size = batch_size
        self.skip = 0

    def set_position(self, epoch: int, skip_batches: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip_batches * self.batch_size

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip
