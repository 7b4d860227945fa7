"""A runnable stand-in for the real data2vec model, used by the engine's subprocess tests.

`python -m d2v.train._selftest OUT [--steps N] ...` (or under `torchrun`) trains `StandInModel`, a
tiny model that honours the d2v.core contract exactly (EMA teacher with requires_grad=False,
`ema_step()`, masking drawn from the passed generator, dropout from the global RNG, logs), on a
synthetic dataset, through the real `pretrain` loop. Not used by the pipeline.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from d2v.artifacts.config import ArtifactsConfig
from d2v.core.health import effective_rank, relative_loss
from d2v.core.types import Data2VecOutput
from d2v.errors import D2VError
from d2v.train.checkpoint import ModelFingerprint
from d2v.train.config import TrainConfig
from d2v.train.distributed import init_distributed, shutdown_distributed
from d2v.train.loop import RunPaths, pretrain

DIM = 8


class _Encoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(2 * dim)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(torch.relu(self.norm(self.proj(x + self.pos_embed)))))


class StandInModel(nn.Module):
    """Student regresses the EMA teacher's view of the unmasked input at masked positions."""

    def __init__(self, dim: int = DIM, tau: float = 0.9, step_delay_s: float = 0.0) -> None:
        super().__init__()
        self.student = _Encoder(dim)
        self.mask_embed = nn.Parameter(torch.zeros(dim))
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.tau = tau
        self.step_delay_s = step_delay_s  # slows a run down so a test can kill it mid-way

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Data2VecOutput:
        x = batch["x"]  # (B, D)
        mask = (torch.rand(x.shape, generator=generator) < 0.5).to(x.device)  # (B, D) True = masked
        student_in = torch.where(mask, self.mask_embed.expand_as(x), x)
        pred = self.student(student_in)
        with torch.no_grad():
            self.teacher.eval()
            target = self.teacher(x)
        loss = ((pred - target) ** 2)[mask].mean()
        logs = {
            "target_var": float(target.var()),
            "pred_var": float(pred.detach().var()),
            "rel_loss": float(relative_loss(pred.detach(), target)),
            "target_rank": float(effective_rank(target)),
            "pred_rank": float(effective_rank(pred.detach())),
            "tau": self.tau,
            "masked_fraction": float(mask.float().mean()),
        }
        return Data2VecOutput(loss=loss, logs=logs)

    @torch.no_grad()
    def ema_step(self) -> None:
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.lerp_(s, 1.0 - self.tau)
        self.num_updates += 1
        if self.step_delay_s:
            time.sleep(self.step_delay_s)


class SyntheticDataset(Dataset):
    """Fixed random vectors: `{"x": (D,)}` per item, identical for every process with the same seed."""

    def __init__(self, size: int, dim: int = DIM, seed: int = 123) -> None:
        self.data = torch.randn(size, dim, generator=torch.Generator().manual_seed(seed))  # (N, D)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"x": self.data[index]}


def tiny_config(**overrides: object) -> TrainConfig:
    base = TrainConfig(
        batch_size=4, grad_accum=2, max_steps=12, lr=1e-2, betas=(0.9, 0.98), eps=1e-6,
        weight_decay=0.01, schedule="cosine", warmup_steps=2, tri_stage=(0.1, 0.4, 0.5), min_lr=1e-4,
        grad_clip=1.0, checkpoint_every=4, keep_last=1, log_every=2, compile=False, num_workers=0,
        max_consecutive_nonfinite=3,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


FINGERPRINT = ModelFingerprint("image", 2, "standin", "0" * 16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m d2v.train._selftest")
    parser.add_argument("out", type=Path, help="directory for checkpoint, metrics and weight dumps")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--checkpoint-every", type=int, default=4)
    parser.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep per update")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-id", default=None, help="the run identity --resume compares (default: none)")
    parser.add_argument("--checkpoint-store", default=None, help="s3://bucket/prefix or file://dir (needs --run-id)")
    parser.add_argument("--endpoint-url", default=None, help="the checkpoint store's S3 endpoint (moto, MinIO)")
    args = parser.parse_args(argv)
    env = init_distributed()
    try:
        torch.manual_seed(args.seed)  # the model's initial weights
        model = StandInModel(step_delay_s=args.step_delay)
        cfg = tiny_config(max_steps=args.steps, checkpoint_every=args.checkpoint_every)
        paths = RunPaths(checkpoint=args.out / "ckpt.pt", metrics_dir=args.out / "metrics")
        store = None if args.checkpoint_store is None else ArtifactsConfig(
            uri=args.checkpoint_store, endpoint_url=args.endpoint_url)
        pretrain(
            model, SyntheticDataset(64), cfg, modality="image", fingerprint=FINGERPRINT,
            seed=args.seed, paths=paths, env=env, resume=args.resume, run_id=args.run_id,
            checkpoint_store=store,
        )
        torch.save(model.state_dict(), args.out / f"weights-rank{env.rank}.pt")
    except D2VError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
