"""The pretraining loop: model-agnostic, exact on resume, the same code for 1 process or torchrun.

Model contract (d2v.core): `model(batch, generator=g) -> Data2VecOutput` and `model.ema_step()`
after every optimizer update; the EMA teacher lives inside the model with requires_grad=False and
its state_dict holds student + teacher. One update (d2v/train/update.py) is `grad_accum`
micro-batches (forward, backward), a global finiteness check, clipping, AdamW step, EMA step; a
non-finite update is skipped (counted; too many in a row stops training). D2VErrors from the model
(collapse guard) propagate untouched. This module sets a run up, resumes it, feeds it data, saves
its checkpoints and writes its summary.

Exact resume: the data order is a function of (seed, epoch) and the number of batches consumed;
RNG states (python, numpy, torch, CUDA, the masking generator; per rank) are checkpointed. With
num_workers > 0, augmentation randomness inside workers is only reproducible if the dataset derives
it from (epoch, index) — datasets may expose `set_epoch(epoch)`, which the loop calls.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sized

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from d2v.artifacts.config import ArtifactsConfig
from d2v.errors import D2VError
from d2v.progress import Progress
from d2v.train import checkpoint as ckpt
from d2v.train.checkpoint_mirror import CheckpointMirror
from d2v.train.checkpoint_store import CheckpointStore, restore_newer
from d2v.train.config import TrainConfig, validate_train_config
from d2v.train.distributed import (
    DistEnv,
    ResumableSampler,
    barrier,
    broadcast_flag,
    gather_objects,
)
from d2v.train.health import HealthLog
from d2v.train.metrics import PretrainLog
from d2v.train.optim import build_optimizer
from d2v.train.preemption import Preempted, TermSignal
from d2v.train.rng_state import capture_rng, restore_rng
from d2v.train.schedules import StepScheduler
from d2v.train.update import Trainer, TrainState, train_step

@dataclass(frozen=True)
class RunPaths:
    checkpoint: Path  # e.g. models/pretrain/image.pt; overwritten atomically
    metrics_dir: Path  # e.g. metrics/pretrain; gets <modality>/ (DVCLive: metrics.json, plots/metrics/*.tsv)


def pretrain(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    modality: str,
    fingerprint: ckpt.ModelFingerprint,
    seed: int,
    paths: RunPaths,
    env: DistEnv,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    resume: bool = False,
    run_id: str | None = None,
    checkpoint_store: ArtifactsConfig | None = None,
) -> dict[str, Any]:
    """Train `model` for `cfg.max_steps` updates; return the summary (also written by rank 0).

    `resume`: continue from `paths.checkpoint` when it exists and was written by the run `run_id`
    names (d2v/train/run_identity.py); a checkpoint of another run is replaced from step 0. SIGTERM
    (preemption) saves a checkpoint after the current step and stops with `Preempted`.
    `checkpoint_store` (pretrain.checkpoint_store): rank 0 mirrors every checkpoint there, and
    `resume` first fetches this run's checkpoint from it when the local one is missing or older."""
    validate_train_config(cfg, f"pretrain.{modality}")
    if not callable(getattr(model, "ema_step", None)):
        raise D2VError(f"pretrain: {type(model).__name__} has no ema_step(); it is not a data2vec model")
    store = CheckpointStore.open(checkpoint_store, modality, run_id) if checkpoint_store and env.is_main else None
    trainer, state = _setup(model, cfg, fingerprint, seed, paths, env, resume, run_id, store)
    sampler = ResumableSampler(_sized(dataset), env, seed, cfg.batch_size)
    if sampler.batches_per_epoch() < 1:
        raise D2VError(
            f"pretrain.{modality}: {len(_sized(dataset))} examples cannot fill one batch of "
            f"{cfg.batch_size} per process on {env.world_size} process(es)"
        )
    stream = _micro_batches(dataset, sampler, cfg, collate_fn, seed, state, env)
    metrics = PretrainLog(paths.metrics_dir / modality)
    if env.is_main:
        metrics.start(state.step)
    progress = Progress(
        f"pretrain {modality}", cfg.max_steps, initial=state.step, every=cfg.log_every, enabled=env.is_main
    )
    progress.message(
        f"device={env.device} world={env.world_size} effective_batch="
        f"{cfg.batch_size * cfg.grad_accum * env.world_size} start_step={state.step}"
    )
    mirror = CheckpointMirror(store, paths.checkpoint, cfg.keep_last) if store is not None else None
    try:
        with TermSignal() as term:
            while state.step < cfg.max_steps:
                row = train_step(trainer, stream, state)
                if env.is_main:
                    metrics.append(row)
                progress.update(state.step, {k: row[k] for k in ("loss", "lr", "samples_per_s")})
                stop = broadcast_flag(term.received, env)  # every rank stops at the same step
                if stop or state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps:
                    _save(trainer, state, fingerprint, paths.checkpoint, run_id, mirror)
                if stop and state.step < cfg.max_steps:
                    raise Preempted(f"pretrain {modality}: stopped by SIGTERM after step {state.step} of "
                                    f"{cfg.max_steps}; checkpoint saved to {paths.checkpoint}; run again with "
                                    "--resume (dvc repro does) to continue")  # fmt: skip
    finally:
        progress.close()
        if mirror is not None:  # the last checkpoint (the final model, or SIGTERM's) reaches the store
            mirror.close()
    summary = _summary(state, cfg, env, modality)
    if env.is_main:
        metrics.finish(summary)
    return summary


def _sized(dataset: Dataset) -> Sized:
    if not hasattr(dataset, "__len__"):
        name = type(dataset).__name__
        raise D2VError(f"pretrain: the dataset {name} has no length (a map-style dataset is needed)")
    return dataset  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Setup and resume
# --------------------------------------------------------------------------------------------------


def _seed_all(seed: int, rank: int, generator: torch.Generator) -> None:
    """Ranks differ (dropout, masks) by design; the data order is shared via the sampler's seed."""
    rank_seed = seed + 1_000_003 * rank
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)
    torch.manual_seed(rank_seed)
    generator.manual_seed(rank_seed + 1)


def _setup(
    model: nn.Module,
    cfg: TrainConfig,
    fingerprint: ckpt.ModelFingerprint,
    seed: int,
    paths: RunPaths,
    env: DistEnv,
    resume: bool,
    run_id: str | None = None,
    store: CheckpointStore | None = None,
) -> tuple[Trainer, TrainState]:
    model.to(env.device)
    optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps)
    scheduler = StepScheduler(optimizer, cfg)
    generator = torch.Generator()  # CPU: masks are drawn on CPU and moved by the model
    state = TrainState()
    _seed_all(seed, env.rank, generator)
    if resume and env.rank == 0:  # what a save killed mid-write left beside the checkpoint
        ckpt.remove_stale_temporaries(paths.checkpoint)
        if store is not None:  # a fresh pod, or one whose disk kept an older step
            restore_newer(store, paths.checkpoint)
    if broadcast_flag(resume and env.rank == 0 and _same_run(paths.checkpoint, run_id), env):
        payload = ckpt.load_checkpoint(paths.checkpoint, expected=fingerprint)
        # Load before DDP wraps the model: DDP broadcasts rank 0's weights when constructed.
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        state = _state_from(payload)
        _restore_rank_rng(payload["rng"], env, generator, seed, state.step)
    forward: Callable[..., Any] = model
    if env.distributed:
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        forward = DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        forward = torch.compile(forward)
    model.train()
    return Trainer(model, forward, optimizer, scheduler, generator, env, cfg), state


def _same_run(path: Path, run_id: str | None) -> bool:
    """Whether the checkpoint at `path` continues this run; says why not when it exists but does not."""
    if not path.is_file():
        return False
    if run_id is None:  # the caller did not identify the run (tests, d2v's own tools): trust the path
        return True
    found = ckpt.run_of(path)
    if found != run_id:
        print(f"[pretrain] {path} was written by another run (model, recipe, seed, data or code changed, "
              "or a checkpoint from before run identities): starting from step 0", file=sys.stderr)  # fmt: skip
        return False
    return True


def _state_from(payload: dict[str, Any]) -> TrainState:
    position = ckpt.data_position_of(payload)
    progress = payload["progress"]
    return TrainState(
        step=int(payload["step"]),
        epoch=position.epoch,
        batches_consumed=position.batches_consumed,
        first_loss=float(progress["first_loss"]),
        recent_losses=[float(v) for v in progress["recent_losses"]],
        nonfinite_total=int(progress["nonfinite_total"]),
        nonfinite_in_a_row=int(progress["nonfinite_in_a_row"]),
        train_time_s=float(progress["train_time_s"]),
        samples_seen=int(progress["samples_seen"]),
        health=HealthLog.from_state_dict(progress.get("health")),
    )


def _restore_rank_rng(
    rng_per_rank: list[dict[str, Any]], env: DistEnv, generator: torch.Generator, seed: int, step: int
) -> None:
    if len(rng_per_rank) == env.world_size:
        restore_rng(rng_per_rank[env.rank], generator)
    else:  # another world size: weights and data position still resume, randomness cannot match
        _seed_all(seed + step, env.rank, generator)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _micro_batches(
    dataset: Dataset,
    sampler: ResumableSampler,
    cfg: TrainConfig,
    collate_fn: Callable[[list[Any]], Any] | None,
    seed: int,
    state: TrainState,
    env: DistEnv,
) -> Iterator[Any]:
    """Endless batches; `state.epoch` / `state.batches_consumed` always name the next one."""
    while True:
        sampler.set_position(state.epoch, state.batches_consumed)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(state.epoch)
        # A dedicated generator: creating a loader iterator must not draw from the global torch RNG
        # (that draw would differ between a run and its resumption); it also seeds the workers.
        loader_rng = torch.Generator().manual_seed(seed * 100_003 + state.epoch * 101 + env.rank)
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=cfg.num_workers,
            collate_fn=collate_fn,
            generator=loader_rng,
            pin_memory=env.device.type == "cuda",
        )
        for batch in loader:
            state.batches_consumed += 1
            yield batch
        state.epoch += 1
        state.batches_consumed = 0


# --------------------------------------------------------------------------------------------------
# Checkpoint and summary
# --------------------------------------------------------------------------------------------------


def _save(trainer: Trainer, state: TrainState, fingerprint: ckpt.ModelFingerprint, path: Path,
          run_id: str | None = None, mirror: CheckpointMirror | None = None) -> None:
    """Collective: every rank contributes its RNG state; rank 0 writes (and queues the upload to the
    checkpoint store); all wait for the file."""
    rng_per_rank = gather_objects(capture_rng(trainer.generator), trainer.env)
    if trainer.env.is_main:
        payload = ckpt.build_payload(
            fingerprint=fingerprint,
            model_state=trainer.model.state_dict(),
            optimizer_state=trainer.optimizer.state_dict(),
            scheduler_state=trainer.scheduler.state_dict(),
            rng_per_rank=rng_per_rank,
            step=state.step,
            position=ckpt.DataPosition(state.epoch, state.batches_consumed),
            progress=state.progress_dict(),
            run=run_id,
        )
        weights = ckpt.save_checkpoint(path, payload, keep_last=trainer.cfg.keep_last)
        if mirror is not None:
            mirror.submit(weights, state.step, final=state.step >= trainer.cfg.max_steps)
    barrier(trainer.env)


def _summary(state: TrainState, cfg: TrainConfig, env: DistEnv, modality: str) -> dict[str, Any]:
    recent = state.recent_losses
    return {
        "modality": modality,
        "steps": state.step,
        "first_loss": state.first_loss,
        "final_loss": recent[-1] if recent else math.nan,
        "final_loss_avg": sum(recent) / len(recent) if recent else math.nan,
        **state.health.summary(),
        "nonfinite_skipped": state.nonfinite_total,
        "train_time_s": round(state.train_time_s, 3),
        "samples_per_s": round(state.samples_seen / state.train_time_s, 2) if state.train_time_s > 0 else 0.0,
        "effective_batch_size": cfg.batch_size * cfg.grad_accum * env.world_size,
        "world_size": env.world_size,
        "device": env.device.type,
    }
