"""GPU check: bf16 step throughput and MFU, DDP loss agreement, kill-and-resume and evaluation on CUDA.

One command, under 10 minutes on one H100 (each part runs in its own process under a timeout):

    bash benchmarks/gpu_check.sh [--smoke]            # = python benchmarks/gpu_check.py [--smoke]

Parts (docs/benchmarks.md#gpu-check):
  peak        the bf16 matmul peak measured now (8192^2, best of a few), and the spec sheet's
  throughput  per modality, data2vec 2.0 at the base preset on the released per-GPU batch (synthetic
              batches): bf16-autocast optimizer steps, samples/s, tokens/s, FLOPs counted by torch's
              FlopCounterMode, MFU against the measured peak (image: target >= 45 %)
  ddp         `d2v pretrain image --nproc-per-node 2` (torchrun via d2v's launcher) against one
              process of the same global batch and seed: per-update losses within a measured tolerance;
              with >= 2 GPUs on NCCL plus 2-GPU / 1-GPU throughput (target >= 1.8x), else gloo on CPU
  resume      `d2v pretrain image` SIGKILLed right after its first checkpoint, `--resume`d, final
              weights compared with an uninterrupted run's
  eval        `d2v evaluate image` (tiny budget) with evaluate.device: cuda

--smoke runs every part on CPU at the tiny preset with a handful of steps (about 2 minutes on 2
cores), marking the checks that need a GPU "skipped" with the reason. Without --smoke a CUDA device is
required. Prints a table (part, metric, value, target, status) and writes
benchmarks/results/gpu_check.json atomically; exits 1 if a check failed or a part crashed / timed out.
Nothing in the repository's data/, models/ or metrics/ is touched: every run is in a temporary project.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "gpu_check.json"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import gpu_check_project as project  # noqa: E402  (a sibling module; puts tests/faults on sys.path)

NO_CUDA_MESSAGE = "no CUDA device: use --smoke for the CPU code path"
PASS, FAIL, SKIPPED, INFO = "pass", "fail", "skipped", "info"  # INFO: a measurement without a target

IMAGE_MFU_TARGET_PCT = 45.0
DDP_SPEEDUP_TARGET = 1.8
# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, for reference beside the measured
# peak. First match on the device name wins: the PCIe and NVL cards before the SXM part.
SPEC_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0),
)

# The released data2vec 2.0 base recipes' batch per GPU (fairseq examples/data2vec/config/v2):
# images: batch_size 16 x 16 GPUs, 224 px, M = 16 (base_images_only_task.yaml); speech: max_tokens
# 1M samples per GPU with crops of at most 320k samples (base_audio_only_task.yaml), here 3 crops of
# 20 s = 0.96M samples; text: batch_size 4 of tokens_per_sample 512 (base_text_only_task.yaml).
# M (clone_batch) is the preset's: 16, 8 and 8.
def released_batch(modality: str) -> dict[str, Any]:
    import torch

    if modality == "image":
        return {"image": torch.randn(16, 3, 224, 224)}
    if modality == "speech":
        return {"waveform": torch.randn(3, 320_000)}
    return {"tokens": torch.randint(5, 50_000, (4, 512))}


MODALITIES = ("image", "speech", "text")


@dataclass(frozen=True)
class Budget:
    """Seconds a part may take before its process group is killed. The full run's sum stays under
    600 s with one GPU (2 GPUs give the ddp part its throughput runs: +90 s)."""

    setup: int = 40
    peak: int = 40
    throughput: int = 70  # per modality
    ddp: int = 110
    ddp_multi_gpu: int = 200
    resume: int = 110
    eval: int = 80

    def total(self, gpus: int) -> int:
        return (self.setup + self.peak + 3 * self.throughput + self.resume + self.eval
                + (self.ddp_multi_gpu if gpus >= 2 else self.ddp))


BUDGET = Budget()


@dataclass(frozen=True)
class Row:
    part: str
    metric: str
    value: Any
    target: str
    status: str
    note: str = ""


@dataclass
class Context:
    """What a part process knows: the mode, the shared work directory, the machine."""

    smoke: bool
    work: Path
    gpus: int  # CUDA devices this check may use (0 with --smoke)
    peak_gflops: float | None = None  # the peak part's measurement, for MFU

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"

    @property
    def prepared(self) -> Path:
        return self.work / "prepared"

    def skip_reason(self) -> str:
        return "--smoke: CPU code path" if self.smoke else NO_CUDA_MESSAGE


@dataclass
class PartOutput:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, part: str, metric: str, value: Any, target: str = "", status: str = INFO, note: str = "") -> None:
        self.rows.append(Row(part, metric, value, target, status, note))


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def spec_peak_tflops(device_name: str) -> float | None:
    """The data sheet's dense bf16 peak for `device_name`, None for a GPU not in the table."""
    for key, tflops in SPEC_BF16_TFLOPS:
        if key in device_name:
            return tflops
    return None


# --------------------------------------------------------------------------------------------------
# Parts (each runs in its own process: `gpu_check.py --part NAME`)
# --------------------------------------------------------------------------------------------------


def part_peak(ctx: Context) -> PartOutput:
    """The matmul peak MFU is measured against: bf16 on CUDA, fp32 on CPU (the loop's precisions)."""
    import torch

    from bench_train_step import matmul_peak_gflops

    out = PartOutput()
    if ctx.gpus:
        n, repeats, dtype = 8192, 50, torch.bfloat16  # ~1 TFLOP a matmul: about 0.1 s a measurement
        name = torch.cuda.get_device_name(0)
        out.details.update(device_name=name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                           memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    else:
        n, repeats, dtype = 1024, 5, torch.float32
        name = platform.processor() or platform.machine()
        out.details.update(device_name=f"CPU ({name}, {torch.get_num_threads()} threads)")
    matmul_peak_gflops(n, repeats, device=ctx.device, dtype=dtype)  # clocks up, kernels chosen
    # Best of five: the peak is what the hardware can do, a slow sample is interference.
    peak = max(matmul_peak_gflops(n, repeats, device=ctx.device, dtype=dtype) for _ in range(5))
    precision = "bf16" if ctx.gpus else "fp32"
    out.details.update(peak_gflops=round(peak, 1), peak_dtype=precision, matmul_n=n)
    shown = f"{peak / 1000:.1f} TFLOP/s" if peak >= 1000 else f"{peak:.1f} GFLOP/s"
    out.add("peak", f"{precision} matmul peak, measured ({n}^2)", shown)
    spec = spec_peak_tflops(out.details["device_name"]) if ctx.gpus else None
    out.details["spec_peak_tflops"] = spec
    if ctx.gpus:
        out.add("peak", "bf16 dense peak, spec sheet", "not in the table" if spec is None else f"{spec:.0f} TFLOP/s",
                note="H100 SXM: 989 TFLOP/s")
    else:
        out.add("peak", "bf16 dense peak, spec sheet", None, status=SKIPPED, note=ctx.skip_reason())
    return out


def smoke_batch(modality: str) -> dict[str, Any]:
    """A quarter of the demo's batch (bench_train_step.SHAPES): the code path, not a measurement."""
    from bench_train_step import SHAPES

    return {k: v[: max(1, v.shape[0] // 4)] for k, v in SHAPES[modality]().items()}


def tokens_per_sample(modality: str, batch: Mapping[str, Any], spec: Any) -> int:
    """Positions one sample gives the encoder before masking: patches, CNN frames or tokens."""
    if modality == "image":
        return (spec.image.image_size // spec.image.patch_size) ** 2
    if modality == "text":
        return int(batch["tokens"].shape[1])
    length = int(batch["waveform"].shape[1])
    for _channels, kernel, stride in spec.speech.conv_layers:
        length = (length - kernel) // stride + 1
    return length


def part_throughput(ctx: Context, modality: str) -> PartOutput:
    import torch

    from bench_train_step import bench
    from d2v.config import ModelChoice
    from d2v.models import model_spec

    out, part = PartOutput(), f"throughput {modality}"
    preset = "tiny" if ctx.smoke else "base"
    batch = smoke_batch(modality) if ctx.smoke else released_batch(modality)
    steps, warmup = (1, 1) if ctx.smoke else (30, 5)  # GPU steps take tens of ms: 30 average out jitter
    row = bench(modality, 2, steps, warmup, preset=preset, batch=batch, device=ctx.device)
    if ctx.gpus:
        row["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    spec = model_spec(modality, ModelChoice(version=2, preset=preset))
    tokens = tokens_per_sample(modality, batch, spec) * int(row["batch"])
    shape = "x".join(str(d) for d in next(iter(batch.values())).shape)
    row.update(preset=preset, shape=shape, tokens_per_step=tokens,
               tokens_per_s=round(tokens / float(row["s_per_step"]), 1),
               precision="bf16 autocast" if ctx.gpus else "fp32")
    out.details.update(row)
    label = f"{preset}, {shape}, M={row['clones']}, {row['precision']}"
    out.add(part, "samples/s", row["samples_per_s"], note=label)
    out.add(part, "tokens/s", row["tokens_per_s"], note="input positions (patches, CNN frames, tokens) before masking")
    out.add(part, "model TFLOP/s", round(float(row["gflops"]) / 1000, 3),
            note=f"{row['gflop_per_step']} GFLOP/step (FlopCounterMode: forward + backward, teacher included)")
    mfu = None if not ctx.peak_gflops else 100 * float(row["gflops"]) / ctx.peak_gflops
    out.details["mfu_pct"] = _round(mfu, 1)
    mfu_text = None if mfu is None else f"{mfu:.1f} %"
    if modality == "image" and ctx.gpus:
        status = FAIL if mfu is None or mfu < IMAGE_MFU_TARGET_PCT else PASS
        out.add(part, "MFU vs measured bf16 peak", mfu_text, f">= {IMAGE_MFU_TARGET_PCT:.0f} %", status,
                "" if mfu is not None else "no peak measured")
    elif modality == "image":
        out.add(part, "MFU vs measured peak", mfu_text, f">= {IMAGE_MFU_TARGET_PCT:.0f} % (bf16, H100/H200)",
                SKIPPED, ctx.skip_reason())
    else:
        out.add(part, "MFU vs measured peak", mfu_text)
    return out


def part_throughput_image(ctx: Context) -> PartOutput:
    return part_throughput(ctx, "image")


def part_throughput_speech(ctx: Context) -> PartOutput:
    return part_throughput(ctx, "speech")


def part_throughput_text(ctx: Context) -> PartOutput:
    return part_throughput(ctx, "text")


# ---------------------------------------------------------------------------------------------- ddp

DDP_BATCH = 16  # per process and micro-batch
DDP_NOISE_DRAWS = 12
DDP_Z = 5.0  # standard deviations of the difference of two independent update losses


def ddp_tolerance(sigma_rel: float, floor: float) -> float:
    """Relative tolerance on |loss_1proc - loss_2proc| / loss_1proc at each update.

    The two runs see the same samples per update but not the same masks and augmentations: d2v seeds
    each rank's mask generator and global RNG with seed + 1000003 x rank (d2v/train/loop.py
    `_seed_all`), so rank 1's draws cannot equal the single process's second micro-batch. Each run's
    update loss is one draw with relative spread sigma_rel (measured), their difference sqrt(2) x
    that; DDP_Z of those leaves a false alarm about once in 10^5 updates. `floor` covers arithmetic
    alone: fp32 all-reduce order (~1e-6) on gloo, bf16 autocast plus NCCL order on CUDA (1e-3),
    both far under the sampling spread."""
    return max(DDP_Z * math.sqrt(2) * sigma_rel, floor)


def update_loss_spread(root: Path, device: str, draws: int = DDP_NOISE_DRAWS) -> tuple[float, float]:
    """Mean and standard deviation of one update's loss (two micro-batches of DDP_BATCH, averaged) at
    the runs' initial weights, over fresh masks and augmentations of the same 2 x DDP_BATCH images."""
    import torch

    from d2v.config import load_params
    from d2v.train.update import autocast
    from d2v.train.run import build_pretraining_model, pretraining_data

    params = load_params(root / "params.yaml")
    data_root = root / project.PREPARED
    seed = params.pretrain.resolve_seed(params.seed)
    torch.manual_seed(seed)  # the initial weights both runs start from (d2v.train.run.run_pretraining)
    model = build_pretraining_model(project.MODALITY, params.model.image, data_root).to(device)
    data = pretraining_data(project.MODALITY, data_root, model, params.pretrain.image, seed)
    model.train()
    losses = []
    for draw in range(draws):
        torch.manual_seed(10_000 + draw)  # augmentation
        generator = torch.Generator().manual_seed(20_000 + draw)  # masks
        halves = []
        for half in range(2):
            items = [data.dataset[i] for i in range(half * DDP_BATCH, (half + 1) * DDP_BATCH)]
            batch = {k: v.to(device) for k, v in data.collate(items).items()}
            with torch.no_grad(), autocast(torch.device(device)):
                halves.append(float(model(batch, generator=generator).loss.float()))
        losses.append(sum(halves) / 2)
    return statistics.mean(losses), statistics.stdev(losses)


def _pretrain(ctx: Context, name: str, recipe: Mapping[str, Any], nproc: int, env: Mapping[str, str],
              *, params: dict[str, Any] | None = None, prepared: Path | None = None) -> Path:
    """One complete `d2v pretrain image` run in a fresh project; returns the project."""
    root = project.clone(prepared or ctx.prepared, ctx.work / name, params or project.project_params(recipe=recipe))
    args = ["pretrain", project.MODALITY] + (["--nproc-per-node", str(nproc)] if nproc > 1 else [])
    project.run(args, root, env=env, timeout=300)
    return root


def _summary(root: Path) -> dict[str, Any]:
    return json.loads((root / "metrics" / "pretrain" / project.MODALITY / "metrics.json").read_text())


def _loss_agreement(ctx: Context, out: PartOutput, label: str, env: Mapping[str, str], device: str) -> None:
    """2 processes x DDP_BATCH against 1 process x DDP_BATCH x grad_accum 2: the same global batch,
    seed and objective (not 1 x 2 DDP_BATCH: the 2.0 image CLS term is a sum over a process's rows,
    as in fairseq, so the loss depends on the per-process batch; measured 25.5 vs 21.8 at init)."""
    steps = 4 if ctx.smoke else 8
    recipe = {"batch_size": DDP_BATCH, "max_steps": steps, "checkpoint_every": steps}
    one = _pretrain(ctx, f"ddp-{label}-1proc", {**recipe, "grad_accum": 2}, 1, env)
    two = _pretrain(ctx, f"ddp-{label}-2proc", {**recipe, "grad_accum": 1}, 2, env)
    a, b = project.step_values(one, "loss"), project.step_values(two, "loss")
    _, sigma = update_loss_spread(one, device, draws=8 if ctx.smoke else DDP_NOISE_DRAWS)
    mean_loss = statistics.mean(a) if a else math.nan
    sigma_rel = sigma / abs(a[0]) if a else math.nan
    floor = 1e-3 if device == "cuda" else 1e-5
    tol = ddp_tolerance(sigma_rel, floor)
    diffs = [abs(x - y) / abs(x) for x, y in zip(a, b)]
    worst = max(diffs) if diffs and len(a) == len(b) == steps else math.inf
    world = _summary(two).get("world_size")
    ok = worst <= tol and world == 2
    out.details[label] = {"losses_1proc": a, "losses_2proc": b, "rel_diffs": diffs, "sigma_update_loss": sigma,
                          "sigma_rel": sigma_rel, "tolerance_rel": tol, "world_size_2proc": world,
                          "device": _summary(two).get("device"), "mean_loss": mean_loss}
    out.add("ddp", f"{label}: 2-proc vs 1-proc loss, max rel. diff over {steps} updates",
            f"{100 * worst:.3f} %", f"<= {100 * tol:.3f} %", PASS if ok else FAIL,
            f"tolerance = {DDP_Z:.0f} x sqrt(2) x the update loss's sampling spread ({100 * sigma_rel:.3f} %); "
            f"global batch {2 * DDP_BATCH}" + ("" if world == 2 else f"; world size {world}, expected 2"))


def _median_samples_per_s(root: Path, skip: int) -> float:
    values = project.step_values(root, "samples_per_s")[skip:]
    return statistics.median(values) if values else math.nan


def _multi_gpu_speedup(ctx: Context, out: PartOutput) -> None:
    """Base image model at 224 px RGB, the released 16 images per GPU: 2 GPUs against 1 (weak scaling)."""
    steps, skip = 25, 10  # the first updates pay for cuDNN autotuning and NCCL's first buckets
    image = {"image_size": 224, "channels": 3}
    params = project.project_params(image=image, model={"preset": "base"},
                                     recipe={"batch_size": 16, "max_steps": steps, "checkpoint_every": steps,
                                             "num_workers": 4})
    prepared = project.prepare(ctx.work / "prepared-224", params)
    one = _pretrain(ctx, "ddp-speed-1gpu", {}, 1, {"CUDA_VISIBLE_DEVICES": "0"}, params=params, prepared=prepared)
    two = _pretrain(ctx, "ddp-speed-2gpu", {}, 2, {"CUDA_VISIBLE_DEVICES": "0,1"}, params=params, prepared=prepared)
    rate_one, rate_two = _median_samples_per_s(one, skip), _median_samples_per_s(two, skip)
    speedup = rate_two / rate_one if rate_one > 0 else math.nan
    out.details["speedup"] = {"samples_per_s_1gpu": rate_one, "samples_per_s_2gpu": rate_two, "speedup": speedup}
    ok = math.isfinite(speedup) and speedup >= DDP_SPEEDUP_TARGET
    out.add("ddp", "2-GPU / 1-GPU throughput (base image, 16 per GPU)", f"{speedup:.2f}x",
            f">= {DDP_SPEEDUP_TARGET}x", PASS if ok else FAIL,
            f"{rate_one:.1f} -> {rate_two:.1f} samples/s, median of updates {skip + 1}-{steps}")


def part_ddp(ctx: Context) -> PartOutput:
    out = PartOutput()
    if ctx.gpus >= 2:
        _loss_agreement(ctx, out, "nccl-gpu", {"CUDA_VISIBLE_DEVICES": "0,1"}, "cuda")
        _multi_gpu_speedup(ctx, out)
        return out
    # NCCL refuses two ranks on one device, so the 2-process code path runs on gloo with the GPU hidden.
    _loss_agreement(ctx, out, "gloo-cpu", project.cpu_only(), "cpu")
    reason = ctx.skip_reason() if not ctx.gpus else "1 GPU: NCCL refuses two ranks on one GPU"
    out.add("ddp", "nccl-gpu: 2-proc vs 1-proc loss", None, "", SKIPPED, reason)
    out.add("ddp", "2-GPU / 1-GPU throughput", None, f">= {DDP_SPEEDUP_TARGET}x", SKIPPED, reason)
    return out


# ------------------------------------------------------------------------------------------- resume


def part_resume(ctx: Context) -> PartOutput:
    """SIGKILL right after the first checkpoint, --resume, compare the final weights with a straight run.

    Bit-exact on CPU (the loop restores data position and every RNG). On CUDA bit-exactness is not
    expected: d2v does not turn on torch.use_deterministic_algorithms, and backward kernels that
    accumulate with atomics (index_add, scatter, attention backward) reorder float sums from run to
    run. There the resumed run must be as close to the straight run as a second straight run is."""
    out = PartOutput()
    steps, every = (6, 2) if ctx.smoke else (30, 10)
    recipe = {"batch_size": 16, "max_steps": steps, "checkpoint_every": every}
    env: dict[str, str] = {}
    straight = _pretrain(ctx, "resume-straight", recipe, 1, env)
    root = project.clone(ctx.prepared, ctx.work / "resume-killed", project.project_params(recipe=recipe))
    victim = project.start(["pretrain", project.MODALITY], root, env)
    try:
        logged = project.kill_after_checkpoint(victim, root, every, timeout=120)
        victim.communicate(timeout=30)
    finally:
        project.reap(victim)
    killed_step, _ = project.final_weights(root)
    project.run(["pretrain", project.MODALITY, "--resume"], root, env=env, timeout=300)
    step_a, weights_a = project.final_weights(straight)
    step_b, weights_b = project.final_weights(root)
    diff, exact = project.max_abs_difference(weights_a, weights_b)
    device = _summary(root).get("device")
    killed = victim.returncode == -signal.SIGKILL and logged is not None and 0 < killed_step < steps
    out.details.update(victim_rc=victim.returncode, updates_logged_at_kill=logged, checkpoint_step_at_kill=killed_step,
                       final_steps=[step_a, step_b], max_abs_diff=diff, bit_exact=exact, device=device)
    out.add("resume", "SIGKILL after the first checkpoint", f"rc {victim.returncode}, checkpoint at step {killed_step}",
            f"killed, 0 < step < {steps}", PASS if killed else FAIL, f"{logged} updates logged at the kill")
    if ctx.gpus:
        second = _pretrain(ctx, "resume-straight-2", recipe, 1, env)
        floor, floor_exact = project.max_abs_difference(weights_a, project.final_weights(second)[1])
        ok = step_b == steps and (exact or diff <= 2 * floor)
        out.details.update(run_to_run_max_abs_diff=floor, run_to_run_bit_exact=floor_exact)
        out.add("resume", "resumed vs uninterrupted, max |w diff| (cuda)", f"{diff:.3g}" + (" (bit-exact)" if exact else ""),
                f"<= 2 x run-to-run ({floor:.3g})", PASS if ok else FAIL,
                f"device {device}; bit-exact not expected on CUDA (no deterministic algorithms)")
    else:
        ok = step_b == steps and exact
        out.add("resume", "resumed vs uninterrupted, max |w diff| (cpu)", f"{diff:.3g}" + (" (bit-exact)" if exact else ""),
                "0 (bit-exact)", PASS if ok else FAIL, f"{steps} updates, checkpoint every {every}")
        out.add("resume", "kill-and-resume on CUDA", None, "", SKIPPED, ctx.skip_reason())
    return out


# --------------------------------------------------------------------------------------------- eval


def evaluate_device_available() -> bool:
    """Whether d2v's params schema has `evaluate.device` (auto | cpu | cuda)."""
    from d2v.eval.config import EvaluateConfig

    return "device" in {f.name for f in dataclasses.fields(EvaluateConfig)}


def _d2v_in(root: Path, args: list[str]) -> int:
    """`d2v <args>` in this process with `root` as the working directory (the params' data, models
    and metrics paths are relative, as under `dvc repro`)."""
    from d2v.cli import main as d2v_main

    cwd = Path.cwd()
    os.chdir(root)
    try:
        return d2v_main(args)
    finally:
        os.chdir(cwd)


def part_eval(ctx: Context) -> PartOutput:
    """A one-update pretraining (for its checkpoint), then `d2v evaluate image`, both in this process:
    CUDA's allocator then shows whether the evaluation's tensors went to the GPU."""
    import torch

    out = PartOutput()
    available = evaluate_device_available()
    device = ctx.device if available else None
    recipe = {"batch_size": 16, "max_steps": 1, "checkpoint_every": 1}  # a checkpoint to evaluate, no more
    params = project.project_params(recipe=recipe, evaluate={"device": device} if device else {})
    root = project.clone(ctx.prepared, ctx.work / "eval", params)
    if _d2v_in(root, ["pretrain", project.MODALITY]) != 0:
        raise RuntimeError("d2v pretrain image failed: no checkpoint to evaluate")
    cuda = torch.cuda.is_available()
    if cuda:  # from here on, the peak counts only what the evaluation allocates
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated() if cuda else 0
    began = time.perf_counter()
    rc = _d2v_in(root, ["evaluate", project.MODALITY])
    seconds = time.perf_counter() - began
    wrote = (root / project.EVAL_JSON).is_file()
    cuda_bytes = torch.cuda.max_memory_allocated() - held if cuda else 0
    out.details.update(evaluate_device=device, rc=rc, seconds=round(seconds, 1), wrote_metrics=wrote,
                       cuda_peak_bytes=cuda_bytes, evaluate_device_available=available)
    ran = rc == 0 and wrote
    out.add("eval", f"d2v evaluate image ({device or 'default device'})", f"rc {rc}, {seconds:.1f} s",
            "completes, writes metrics/eval/image.json", PASS if ran else FAIL)
    out.rows.append(eval_device_row(ctx, available=available, ran=ran, cuda_bytes=cuda_bytes))
    return out


def eval_device_row(ctx: Context, *, available: bool, ran: bool, cuda_bytes: int) -> Row:
    """Whether the evaluation ran on the GPU: skipped where it cannot be asked for."""
    if not available:
        return Row("eval", "evaluation on CUDA", None, "", SKIPPED, "evaluate.device not available")
    if not ctx.gpus:
        return Row("eval", "evaluation on CUDA", None, "", SKIPPED, ctx.skip_reason())
    on_gpu = ran and cuda_bytes > 0
    return Row("eval", "evaluation on CUDA: peak CUDA memory", f"{cuda_bytes / 2**20:.1f} MiB", "> 0",
               PASS if on_gpu else FAIL, "" if on_gpu else "nothing was allocated on the GPU: it ran on CPU")


PARTS: dict[str, Callable[[Context], PartOutput]] = {
    "peak": part_peak,
    "throughput-image": part_throughput_image,
    "throughput-speech": part_throughput_speech,
    "throughput-text": part_throughput_text,
    "ddp": part_ddp,
    "resume": part_resume,
    "eval": part_eval,
}


def part_budget(name: str, gpus: int) -> int:
    if name.startswith("throughput"):
        return BUDGET.throughput
    if name == "ddp":
        return BUDGET.ddp_multi_gpu if gpus >= 2 else BUDGET.ddp
    return int(getattr(BUDGET, name))


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def _part_env(smoke: bool) -> dict[str, str]:
    """This environment without launcher settings (a D2V_NPROC_PER_NODE or torchrun's LOCAL_RANK
    would change how the in-process `d2v pretrain` launches), log lines instead of progress bars."""
    launcher = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith("D2V_") and k not in launcher}
    env.update(PYTHONUNBUFFERED="1", CI="true")
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU code path even on a GPU machine
    return env


def run_part(name: str, ctx: Context, log: Path) -> tuple[PartOutput, dict[str, Any]]:
    """`name` in a child process (its own session, so a timeout kills torchrun's ranks too)."""
    result = ctx.work / f"part-{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--work", str(ctx.work),
           "--gpus", str(ctx.gpus), "--part-out", str(result)]
    cmd += ["--smoke"] if ctx.smoke else []
    cmd += ["--peak-gflops", str(ctx.peak_gflops)] if ctx.peak_gflops else []
    budget = part_budget(name, ctx.gpus)
    began = time.monotonic()
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_part_env(ctx.smoke), stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the part and everything it started (its own group)
            proc.wait()
            rc = None
    seconds = round(time.monotonic() - began, 1)
    status = {"seconds": seconds, "budget_s": budget, "rc": rc}
    if rc == 0 and result.is_file():
        payload = json.loads(result.read_text(encoding="utf-8"))
        return PartOutput([Row(**r) for r in payload["rows"]], payload["details"]), status
    tail = log.read_text(encoding="utf-8", errors="replace")[-2500:]
    status["log_tail"] = tail
    what = f"timed out after {budget} s" if rc is None else f"exited {rc}"
    out = PartOutput()
    last_line = tail.strip().splitlines()[-1][:160] if tail.strip() else ""
    out.add(name, "part completed", what, f"within {budget} s", FAIL, last_line)
    return out, status


def setup(ctx: Context) -> None:
    """The tiny image project every pretraining check copies its prepared data from."""
    params = project.project_params(recipe={"batch_size": 16, "max_steps": 1, "checkpoint_every": 1})
    project.prepare(ctx.prepared, params, timeout=BUDGET.setup)


def environment_info(gpus: int) -> dict[str, Any]:
    import torch

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": gpus,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def format_table(rows: list[Row]) -> str:
    header = ["part", "metric", "value", "target", "status", "note"]
    cells = [[r.part, r.metric, "-" if r.value is None else str(r.value), r.target or "-", r.status, r.note] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header[:-1])]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header[:-1], widths)) + " | note"]
    lines.append("-+-".join("-" * w for w in widths) + "-+-----")
    lines += [" | ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + " | " + row[-1] for row in cells]
    return "\n".join(lines)


def orchestrate(smoke: bool, out_path: Path, keep: bool) -> int:
    import torch

    from d2v.atomic import atomic_write_json

    gpus = 0 if smoke else torch.cuda.device_count()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="d2v-gpu-check-"))
    ctx = Context(smoke=smoke, work=work, gpus=gpus)
    mode = "smoke (CPU, tiny preset)" if smoke else f"full ({gpus} GPU{'s' if gpus != 1 else ''})"
    print(f"gpu check: {mode}; work directory {work}; budget {BUDGET.total(gpus)} s", flush=True)
    parts: dict[str, Any] = {}
    rows: list[Row] = []
    details: dict[str, Any] = {}
    try:
        print("... setup: preparing the tiny image project", flush=True)
        try:
            setup(ctx)
        except Exception as exc:  # noqa: BLE001 - every part needs it: report, write the JSON, fail
            rows.append(Row("setup", "d2v data prepare image", f"{type(exc).__name__}", "", FAIL, str(exc)[-300:]))
        for name in PARTS if not rows else ():
            print(f"... {name} (at most {part_budget(name, gpus)} s)", flush=True)
            output, status = run_part(name, ctx, work / f"part-{name}.log")
            parts[name] = {**status, "details": output.details, "rows": [dataclasses.asdict(r) for r in output.rows]}
            rows += output.rows
            details[name] = output.details
            if name == "peak":
                ctx.peak_gflops = output.details.get("peak_gflops")
            print(f"    {name}: {status['seconds']} s", flush=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - began
    print()
    print(format_table(rows))
    failures = [f"{r.part}: {r.metric}" for r in rows if r.status == FAIL]
    peak = details.get("peak", {})
    payload = {
        "date": datetime.date.today().isoformat(),
        "mode": "smoke" if smoke else "full",
        "device": peak.get("device_name"),
        "device_capability": peak.get("capability"),
        "matmul_peak_tflops": None if peak.get("peak_gflops") is None else round(peak["peak_gflops"] / 1000, 3),
        "matmul_peak_dtype": peak.get("peak_dtype"),
        "spec_peak_tflops": peak.get("spec_peak_tflops"),
        **environment_info(gpus),
        "targets": {"image_mfu_pct": IMAGE_MFU_TARGET_PCT, "ddp_speedup": DDP_SPEEDUP_TARGET},
        "wall_time_s": round(wall, 1),
        "budget_s": BUDGET.total(gpus),
        "parts": parts,
        "rows": [dataclasses.asdict(r) for r in rows],
        "failures": failures,
    }
    atomic_write_json(out_path, json.loads(json.dumps(payload, default=str)))  # a temporary name, then rename
    print(f"\ntotal wall time: {wall:.1f} s; wrote {out_path}")
    if failures:
        print("failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def _child(args: argparse.Namespace) -> int:
    """One part in this process; its rows and details go to --part-out."""
    from d2v.atomic import atomic_write_json

    ctx = Context(smoke=args.smoke, work=args.work, gpus=args.gpus, peak_gflops=args.peak_gflops)
    output = PARTS[args.part](ctx)
    payload = {"rows": [dataclasses.asdict(r) for r in output.rows], "details": output.details}
    atomic_write_json(args.part_out, json.loads(json.dumps(payload, default=str)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every part on CPU at the tiny preset (no GPU needed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"the JSON to write (default: {RESULTS.relative_to(REPO)})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory (part logs, projects)")
    internal = parser.add_argument_group("internal (one part in a child process)")
    internal.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    internal.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    internal.add_argument("--gpus", type=int, default=0, help=argparse.SUPPRESS)
    internal.add_argument("--part-out", type=Path, help=argparse.SUPPRESS)
    internal.add_argument("--peak-gflops", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        return _child(args)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check: {NO_CUDA_MESSAGE}", file=sys.stderr)
        return 2
    return orchestrate(args.smoke, args.out, args.keep)


if __name__ == "__main__":
    sys.exit(main())
