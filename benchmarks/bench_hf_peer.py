"""d2v's data2vec 1.0 image training step against a peer written on Hugging Face transformers.

The peer is a data2vec step as public wrappers write it: the student is transformers'
`Data2VecVisionModel` with its mask token, the teacher a deep copy updated by a Python loop over its
parameters, the targets the average of the teacher's top-K hidden states, each instance-normalised,
a linear regression head, MSE on the masked patches and `torch.optim.AdamW` with its defaults. d2v
runs its own step: `build_model` of the tiny 1.0 image preset, `build_optimizer` (fused AdamW) and
`ema_step`. Both use the same shape (the issue-27 shape: width 128, 4 blocks, 4 heads, 28 px grey
images in 4 px patches, batch 64, 60 % of patches masked, top-3 targets, BEiT's shared relative
position bias, layer scale 0.1, no dropout), fp32, this process's threads. The two are timed in
alternating rounds in one process, so a machine whose speed drifts slows both alike; FLOPs per step
are counted for both (torch's FlopCounterMode) to show the work is comparable.

    python benchmarks/bench_hf_peer.py [--rounds 5] [--steps 5] [--warmup 3]

Needs `transformers` (not a d2v dependency: `pip install transformers`); without it the script
says so and exits 0, so that `make bench` goes on. Prints a table and writes benchmarks/results/hf_peer.json.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from d2v.atomic import atomic_write_json
from d2v.config import ModelChoice
from d2v.models import build_model, model_spec
from d2v.train.optim import build_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import matmul_peak_gflops, training_step  # noqa: E402  (a sibling script, not a package)

RESULTS = Path(__file__).resolve().parent / "results" / "hf_peer.json"

WIDTH, DEPTH, HEADS, IMAGE, PATCH, BATCH = 128, 4, 4, 28, 4, 64
MASK_RATIO, TOP_K, TAU = 0.6, 3, 0.999

Step = Callable[[], None]


def d2v_step(batch: torch.Tensor) -> Step:
    """d2v's own 1.0 image step at the shared shape: forward, backward, fused AdamW, EMA update."""
    torch.manual_seed(0)
    spec = model_spec("image", ModelChoice(version=1, preset="tiny", overrides={"mask": {"ratio": MASK_RATIO}}))
    model = build_model(spec)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(0)
    return training_step(model, optimizer, {"image": batch}, generator, torch.device("cpu"))


class PeerData2Vec(nn.Module):
    """Student (transformers' Data2VecVisionModel with a mask token) plus a regression head; the
    teacher is a frozen deep copy of the student, moved by `ema_update`."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import Data2VecVisionConfig, Data2VecVisionModel  # optional: see the module doc

        config = Data2VecVisionConfig(
            hidden_size=WIDTH, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * WIDTH,
            image_size=IMAGE, patch_size=PATCH, num_channels=1, use_mask_token=True,
            use_absolute_position_embeddings=False, use_shared_relative_position_bias=True,
            use_relative_position_bias=False, layer_scale_init_value=0.1, drop_path_rate=0.0,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6,
        )
        self.student = Data2VecVisionModel(config, add_pooling_layer=False)
        self.head = nn.Linear(WIDTH, WIDTH)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)

    def forward(self, pixels: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.teacher.eval()
            hidden = self.teacher(pixels, output_hidden_states=True).hidden_states[-TOP_K:]
            # (B, 1 + T, D) per layer, CLS first: instance-normalise each layer over time, then average.
            targets = sum(F.instance_norm(h[:, 1:].transpose(1, 2)).transpose(1, 2) for h in hidden) / TOP_K
        out = self.student(pixels, bool_masked_pos=masked).last_hidden_state[:, 1:]
        pred = self.head(out)
        return F.mse_loss(pred[masked], targets[masked])

    @torch.no_grad()
    def ema_update(self) -> None:
        for teacher_param, student_param in zip(self.teacher.parameters(), self.student.parameters()):
            teacher_param.mul_(TAU).add_(student_param.detach(), alpha=1 - TAU)


def random_masks(rows: int, tokens: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(rows, tokens) bool, exactly int(ratio * tokens) True per row, positions uniform at random."""
    order = torch.rand(rows, tokens, generator=generator).argsort(dim=1)
    return order < int(ratio * tokens)


def peer_step(batch: torch.Tensor) -> tuple[Step, PeerData2Vec]:
    """The peer's step at the shared shape, and the model it trains."""
    torch.manual_seed(0)
    model = PeerData2Vec()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    tokens = (IMAGE // PATCH) ** 2

    def step() -> None:
        loss = model(batch, random_masks(batch.shape[0], tokens, MASK_RATIO, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.ema_update()

    return step, model


def step_gflop(step: Step) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / 1e9


def interleaved_seconds(steps: dict[str, Step], rounds: int, per_round: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step of every named step, one figure per round; each round times `per_round`
    steps of each, in turn, so drift in the machine's speed reaches all of them."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    return times


def summarise(times: dict[str, list[float]], gflop: dict[str, float], peak: float) -> dict:
    rows = []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rows.append({
            "step": name, "s_per_step_median": round(median, 4), "s_per_step_min": round(min(seconds), 4),
            "s_per_step_max": round(max(seconds), 4), "samples_per_s": round(BATCH / median, 1),
            "gflop_per_step": round(gflop[name], 2), "pct_of_matmul_peak": round(100 * gflop[name] / median / peak, 1),
        })
    by_name = {row["step"]: row for row in rows}
    speedup = by_name["transformers peer"]["s_per_step_median"] / by_name["d2v"]["s_per_step_median"]
    return {"rows": rows, "d2v_speedup_over_peer": round(speedup, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps of each per round")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    try:
        import transformers
    except ImportError:
        # Skipped, not failed: `make bench` runs every script, and transformers is not a d2v dependency.
        print("bench_hf_peer.py: skipped, it needs transformers (not a d2v dependency): pip install transformers")
        return 0
    batch = torch.randn(BATCH, 1, IMAGE, IMAGE)
    steps = {"d2v": d2v_step(batch), "transformers peer": peer_step(batch)[0]}
    gflop = {name: step_gflop(step) for name, step in steps.items()}
    peak = matmul_peak_gflops()
    times = interleaved_seconds(steps, args.rounds, args.steps, args.warmup)
    peak_after = matmul_peak_gflops()
    summary = summarise(times, gflop, peak)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s before, {peak_after:.1f} after; {torch.get_num_threads()} threads; "
          f"transformers {transformers.__version__}, torch {torch.__version__}")
    print("step | s/step median (min-max) | samples/s | GFLOP/step | % of peak")
    for row in summary["rows"]:
        print(f"{row['step']} | {row['s_per_step_median']} ({row['s_per_step_min']}-{row['s_per_step_max']}) | "
              f"{row['samples_per_s']} | {row['gflop_per_step']} | {row['pct_of_matmul_peak']}")
    print(f"d2v is {summary['d2v_speedup_over_peer']:.2f}x the peer's speed")
    payload = {
        **summary, "matmul_peak_gflops": round(peak, 1), "matmul_peak_gflops_after": round(peak_after, 1),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "rounds": args.rounds, "steps_per_round": args.steps,
    }
    atomic_write_json(RESULTS, payload)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
