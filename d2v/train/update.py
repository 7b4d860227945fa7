"""One optimizer update of the pretraining loop (d2v.train.loop), and the state it moves.

An update is `grad_accum` micro-batches (forward, backward; DDP all-reduces on the last), one
collective for the mean loss and a global finiteness flag, clipping, the AdamW step and the EMA
step. A non-finite update is skipped and counted; too many in a row stop training.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from d2v.errors import D2VError
from d2v.train.config import TrainConfig
from d2v.train.distributed import DistEnv, all_reduce_sum, to_device
from d2v.train.health import RECENT, HealthLog
from d2v.train.schedules import StepScheduler

LOG_KEYS = ("target_var", "pred_var", "rel_loss", "target_rank", "pred_rank", "tau", "masked_fraction")
RECENT_LOSSES = RECENT  # the summary's final_loss_avg averages this many last finite losses


class NonFiniteLossError(D2VError):
    """Too many consecutive updates had a NaN/inf loss or gradient."""


@dataclass
class TrainState:
    """What moves during training; all of it goes into the checkpoint."""

    step: int = 0
    epoch: int = 0
    batches_consumed: int = 0
    first_loss: float = math.nan
    recent_losses: list[float] = field(default_factory=list)
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    train_time_s: float = 0.0
    samples_seen: int = 0
    health: HealthLog = field(default_factory=HealthLog)  # the summary's health figures

    def progress_dict(self) -> dict[str, Any]:
        return {
            "first_loss": self.first_loss,
            "recent_losses": list(self.recent_losses),
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "train_time_s": self.train_time_s,
            "samples_seen": self.samples_seen,
            "health": self.health.state_dict(),
        }


@dataclass
class Trainer:
    """The live objects of one run, built once by `pretrain`."""

    model: nn.Module  # unwrapped: state_dict, ema_step
    forward: Callable[..., Any]  # what is called: maybe DDP- and compile-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: StepScheduler
    generator: torch.Generator
    env: DistEnv
    cfg: TrainConfig


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; plain fp32 on CPU (bf16 matmul is ~50x slower on these CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def accumulate(trainer: Trainer, stream: Iterator[Any]) -> tuple[float, dict[str, float]]:
    """Forward + backward over `grad_accum` micro-batches; return the summed loss and mean logs."""
    cfg, env = trainer.cfg, trainer.env
    loss_sum = 0.0
    logs: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        batch = to_device(next(stream), env.device)
        last = micro == cfg.grad_accum - 1
        # Gradients are all-reduced once per update, on the last micro-batch.
        no_sync = getattr(trainer.forward, "no_sync", None)
        sync_ctx = no_sync() if (env.distributed and not last and no_sync) else contextlib.nullcontext()
        with sync_ctx:
            with autocast(env.device):
                out = trainer.forward(batch, generator=trainer.generator)
            (out.loss.float() / cfg.grad_accum).backward()
        loss_sum += float(out.loss.detach()) / cfg.grad_accum
        for key, value in out.logs.items():
            logs[key] = logs.get(key, 0.0) + float(value) / cfg.grad_accum
    return loss_sum, logs


def train_step(trainer: Trainer, stream: Iterator[Any], state: TrainState) -> dict[str, Any]:
    cfg, env = trainer.cfg, trainer.env
    started = time.perf_counter()
    lr = trainer.scheduler.apply()
    local_loss, logs = accumulate(trainer, stream)
    # One collective per update: the mean loss over ranks and whether any rank saw NaN/inf.
    flags = [local_loss, 0.0 if math.isfinite(local_loss) else 1.0]
    reduced = all_reduce_sum(torch.tensor(flags, dtype=torch.float64, device=env.device), env).tolist()
    loss, any_nonfinite = reduced[0] / env.world_size, reduced[1] > 0
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    if any_nonfinite or not math.isfinite(grad_norm):
        _skip_update(trainer, state, loss)
    else:
        trainer.optimizer.step()
        trainer.model.ema_step()  # type: ignore[operator]
        state.nonfinite_in_a_row = 0
        _record_loss(state, loss)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scheduler.advance()
    state.step += 1
    samples = cfg.batch_size * cfg.grad_accum * env.world_size
    elapsed = time.perf_counter() - started
    state.train_time_s += elapsed
    state.samples_seen += samples
    row = {"step": state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
    row["samples_per_s"] = samples / elapsed
    row.update({k: logs[k] for k in LOG_KEYS if k in logs})
    state.health.observe(row)
    return row


def _skip_update(trainer: Trainer, state: TrainState, loss: float) -> None:
    state.nonfinite_total += 1
    state.nonfinite_in_a_row += 1
    if state.nonfinite_in_a_row > trainer.cfg.max_consecutive_nonfinite:
        raise NonFiniteLossError(
            f"pretrain: {state.nonfinite_in_a_row} consecutive updates had a non-finite loss or gradient "
            f"(last loss {loss}) at step {state.step + 1}; lower pretrain.*.lr, lengthen the warm-up, "
            "or check the data"
        )


def _record_loss(state: TrainState, loss: float) -> None:
    if math.isnan(state.first_loss):
        state.first_loss = loss
    state.recent_losses = (state.recent_losses + [loss])[-RECENT_LOSSES:]
