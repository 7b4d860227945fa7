"""Training-step throughput of the data2vec models, and the share of this machine's matmul peak.

For every modality and version (tiny preset, the demo's batch shapes and model overrides, so speech
runs its log-mel front end): time full optimizer steps (forward, backward, AdamW, EMA update), count
their FLOPs with torch's FlopCounterMode, and compare with a square fp32 matmul measured in the
same run. data2vec 2.0 runs three times: with its released M masked clones per teacher pass; at
M = 1, where it does the same number of student passes as 1.0 and the two versions compare at
equal work; and at M = 1 with 80 % of the input masked (the image recipe's ratio on every
modality). Prints a table and the v2-over-v1 speed-ups, and writes benchmarks/results/train_step.json.

    python benchmarks/bench_train_step.py [--steps 8] [--warmup 2] [--compile]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from d2v.config import ModelChoice, load_params
from d2v.atomic import atomic_write_json
from d2v.models import build_model, model_spec
from d2v.train.update import autocast  # the training loop's precision: what a real step runs under
from d2v.train.optim import build_optimizer

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

# The embedded default's pretraining batches (params.yaml pretrain.<modality>.batch_size, crop_seconds).
SHAPES = {
    "image": lambda: {"image": torch.randn(64, 1, 28, 28)},
    "speech": lambda: {"waveform": torch.randn(6, 64_000)},  # 4 s crops at 16 kHz
    "text": lambda: {"tokens": torch.randint(5, 8000, (16, 128))},
}
# (version, M, mask ratio): 1.0; 2.0 as released; 2.0 at M = 1; 2.0 at M = 1 masking 80 %.
VARIANTS: tuple[tuple[int, int | None, float | None], ...] = ((1, None, None), (2, None, None), (2, 1, None), (2, 1, 0.8))


def demo_overrides(modality: str, version: int) -> dict:
    """The demo's model overrides (params.yaml model.<modality>.overrides), which are written for
    2.0; 1.0 rows keep only the front end (`speech`), so both versions see the same input features."""
    overrides = dict(getattr(load_params(PARAMS).model, modality).overrides)
    return overrides if version == 2 else {k: v for k, v in overrides.items() if k == "speech"}


def distinct_variants(modality: str) -> list[tuple[int, int | None, float | None]]:
    """VARIANTS without repeats once the preset's own M and mask ratio fill the None fields (the
    image preset already masks 80 %, so its "M = 1, mask 0.8" row would run twice)."""
    seen: set[tuple[int, int, float]] = set()
    out = []
    for version, clones, ratio in VARIANTS:
        spec = model_spec(modality, ModelChoice(version=version, preset="tiny", overrides=demo_overrides(modality, version)))
        key = (version, spec.clone_batch if clones is None else clones, spec.mask.ratio if ratio is None else ratio)
        if key not in seen:
            seen.add(key)
            out.append((version, clones, ratio))
    return out


def _sync(device: torch.device) -> None:
    """Wait for queued kernels: CUDA launches return before the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(
    n: int = 2048, repeats: int = 10, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> float:
    """GFLOP/s of a square n x n matmul of `dtype` on `device` (defaults: this machine's fp32 CPU peak)."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
    generator: torch.Generator, device: torch.device, *, compiled: bool = False,
) -> Callable[[], None]:
    """One full data2vec update of `model` on `batch`: forward, backward, optimizer, EMA. `compiled`
    runs the forward through `torch.compile`, as the loop's `pretrain.<modality>.compile: true`."""
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with autocast(device):  # the loop's own context: bf16 on CUDA, fp32 on CPU
            out = forward(batch, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.float().backward()
        optimizer.step()
        model.ema_step()

    return step


def bench(
    modality: str,
    version: int,
    steps: int,
    warmup: int,
    clones: int | None = None,
    *,
    mask_ratio: float | None = None,
    overrides: dict | None = None,
    preset: str = "tiny",
    batch: dict[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    compiled: bool = False,
) -> dict[str, float | int | str]:
    """One row; `clones` overrides data2vec 2.0's M and `mask_ratio` its masked fraction (None: the
    preset's); `overrides` are model-spec overrides under those. `batch` defaults to the demo's shape
    (SHAPES); on CUDA the step runs under the training loop's autocast (bf16)."""
    device = torch.device(device)
    torch.manual_seed(0)
    overrides = dict(overrides or {})
    if clones is not None:
        overrides["clone_batch"] = clones
    if mask_ratio is not None:
        overrides["mask"] = {**overrides.get("mask", {}), "ratio": mask_ratio}
    spec = model_spec(modality, ModelChoice(version=version, preset=preset, overrides=overrides))
    model = build_model(spec).to(device)
    # The loop's own optimizer (fused AdamW where torch has it, the recipes' weight-decay exemptions).
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01, betas=(0.9, 0.98))
    generator = torch.Generator().manual_seed(0)  # CPU, as in the loop: masks are drawn on CPU
    batch = {k: v.to(device) for k, v in (SHAPES[modality]() if batch is None else batch).items()}

    step = training_step(model, optimizer, batch, generator, device)
    for _ in range(warmup):
        step()
    counter = FlopCounterMode(display=False)
    with counter:  # counted eagerly: a dispatch mode around compiled code would count its own way
        step()
    if compiled:
        # Each row compiles afresh, as its own training process would: recompiling the same code for
        # another row's shapes makes dynamo trace them as dynamic, and on torch 2.14 the text 2.0
        # backward then fails an inductor stride assertion.
        torch._dynamo.reset()
        step = training_step(model, optimizer, batch, generator, device, compiled=True)
        for _ in range(max(warmup, 2)):  # compilation (and any recompilation) happens here, untimed
            step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    samples = next(iter(batch.values())).shape[0]
    total_flops = counter.get_total_flops()
    return {
        "modality": modality,
        "version": version,
        "clones": spec.clone_batch,
        "mask_ratio": spec.mask.ratio,
        "batch": samples,
        "params_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 3),
        "s_per_step": round(seconds, 4),
        "samples_per_s": round(samples / seconds, 1),
        "gflop_per_step": round(total_flops / 1e9, 2),
        "gflops": round(total_flops / 1e9 / seconds, 1),
        "decoder_flop_share": round(decoder_flops(counter) / max(total_flops, 1), 3),
        "compiled": compiled,
    }


def decoder_flops(counter: FlopCounterMode) -> int:
    """FLOPs (forward and backward) counted inside the model's data2vec 2.0 decoder; 0 for 1.0. It
    runs on every position, kept or masked, so it is the part of a 2.0 step that masking does not shrink."""
    return sum(
        sum(counts.values()) for name, counts in counter.get_flop_counts().items() if name.split(".")[1:] == ["decoder"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile every model's forward (compilation happens in the warm-up, untimed)")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    rows = [
        bench(m, v, args.steps, args.warmup, clones, mask_ratio=ratio, overrides=demo_overrides(m, v), compiled=args.compile)
        for m in SHAPES for v, clones, ratio in distinct_variants(m)
    ]
    peak_after = matmul_peak_gflops()  # the peak moves on shared machines: both ends of the run are shown
    for row in rows:
        row["pct_of_matmul_peak"] = round(100 * float(row["gflops"]) / peak, 1)
    header = ["modality", "version", "clones", "mask_ratio", "batch", "params_m", "s_per_step", "samples_per_s",
              "gflop_per_step", "gflops", "pct_of_matmul_peak", "decoder_flop_share"]
    print(f"fp32 matmul peak measured now: {peak:.1f} GFLOP/s before, {peak_after:.1f} after ({torch.get_num_threads()} threads)"
          + ("; every forward under torch.compile" if args.compile else ""))
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    speedups = v2_speedups(rows)
    for modality, ratios in speedups.items():
        print(f"{modality}: v2 samples/s over v1's: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    payload = {
        "matmul_peak_gflops": round(peak, 1),
        "matmul_peak_gflops_after": round(peak_after, 1),
        "v2_speedup_over_v1": speedups,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "rows": rows,
    }
    atomic_write_json(RESULTS, payload)  # atomic: a temporary name, then rename
    print(f"wrote {RESULTS}")


def v2_speedups(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per modality: each 2.0 row's samples/s over 1.0's, keyed "M=<clones> mask <ratio>"."""
    out: dict[str, dict[str, float]] = {}
    for modality in dict.fromkeys(r["modality"] for r in rows):
        v1 = next(r for r in rows if r["modality"] == modality and r["version"] == 1)
        out[modality] = {
            f"M={r['clones']} mask {r['mask_ratio']}": round(float(r["samples_per_s"]) / float(v1["samples_per_s"]), 2)
            for r in rows if r["modality"] == modality and r["version"] == 2
        }
    return out


if __name__ == "__main__":
    main()
