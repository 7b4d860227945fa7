"""Image linear-probe accuracy against pretraining wall time, data2vec 1.0 vs 2.0 (tiny preset).

The paper's headline claim for 2.0 is reaching 1.0's accuracy many times sooner. For each version
and each budget of updates, one full pretraining run of the embedded default's image recipe (its own
cosine schedule over that many updates; `pretrain.image` otherwise unchanged) and the demo's linear
probe on the result (same subsets, same settings as `d2v evaluate image`). The speed-up is the wall
time 1.0 needs for its best probe accuracy over the time 2.0 needs to first reach it (linear
interpolation between 2.0's budgets). Prints a table, writes benchmarks/results/time_to_accuracy.json.

    python benchmarks/bench_time_to_accuracy.py [--steps 0,50,100,200,400] [--params params.yaml] [--out X.json]

A budget of 0 probes a fresh model of each version (random init): context for the curves, left
out of the speed-up. Takes about 25 minutes on 2 CPU cores (4 budgets x 2 versions). Needs the
prepared image data (`dvc repro validate@image`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from d2v.atomic import atomic_write_json
from d2v.config import load_params
from d2v.data.datasets import ImageCollate, ImageDataset
from d2v.eval.linear_probe import linear_probe
from d2v.eval.stage import IMAGE_SPLITS, load_pretrained
from d2v.train.run import build_pretraining_model, prepared_meta, run_pretraining

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import matmul_peak_gflops  # noqa: E402  (a sibling script, not a package)

RESULTS = Path(__file__).resolve().parent / "results" / "time_to_accuracy.json"


def probe_accuracy(params, encoder, data_root: Path) -> float:
    cfg = params.evaluate.image
    meta = prepared_meta(data_root)
    splits = {name: ImageDataset(data_root, split) for name, split in IMAGE_SPLITS.items()}
    result = linear_probe(
        encoder, splits, cfg.linear_probe, pooling=cfg.pooling, n_test=cfg.n_test, seed=cfg.seed,
        collate=ImageCollate(meta["mean"], meta["std"]),
    )
    return float(result.metrics["top1"])


def one_run(params, version: int, steps: int, workdir: Path) -> dict[str, float]:
    """Pretrain for `steps` updates and probe; 0 updates probes a fresh (random-init) model."""
    choice = dataclasses.replace(params.model.image, version=version)
    data_root = Path(params.data.prepared_dir) / "image"
    seed = params.pretrain.resolve_seed(params.seed)
    if steps == 0:
        torch.manual_seed(seed)
        encoder = build_pretraining_model("image", choice, data_root).student_encoder()
        return {"version": version, "steps": 0, "train_time_s": 0.0, "final_loss": None,
                "probe_top1": probe_accuracy(params, encoder, data_root)}
    recipe = dataclasses.replace(params.pretrain.image, max_steps=steps, checkpoint_every=steps,
                                 warmup_steps=min(params.pretrain.image.warmup_steps, steps // 10))
    checkpoint = workdir / f"v{version}-{steps}" / "checkpoint.pt"
    summary = run_pretraining(
        "image", choice, recipe, data_root=data_root, checkpoint=checkpoint,
        metrics_dir=workdir / f"v{version}-{steps}", seed=seed,
    )
    return {
        "version": version, "steps": steps, "train_time_s": float(summary["train_time_s"]),
        "final_loss": float(summary["final_loss_avg"]),
        "probe_top1": probe_accuracy(params, load_pretrained("image", choice, data_root, checkpoint), data_root),
    }


def time_to_reach(points: list[dict[str, float]], accuracy: float) -> tuple[float | None, bool]:
    """First wall time at which the (time-ordered) curve reaches `accuracy`, and whether that time is
    only an upper bound. Linear interpolation between measured budgets; when the smallest budget
    already reaches it, its time is returned as an upper bound (nothing was measured before it)."""
    ordered = sorted(points, key=lambda p: p["train_time_s"])
    for index, point in enumerate(ordered):
        if point["probe_top1"] >= accuracy:
            if index == 0:
                return point["train_time_s"], True
            previous = ordered[index - 1]
            gain = point["probe_top1"] - previous["probe_top1"]
            fraction = (accuracy - previous["probe_top1"]) / gain  # gain > 0: previous fell short
            return previous["train_time_s"] + fraction * (point["train_time_s"] - previous["train_time_s"]), False
    return None, False


def summarise(runs: list[dict], peak: float) -> dict:
    """The speed-up of 2.0 over 1.0; random-init rows (0 updates) are context, not part of the race."""
    v1 = [r for r in runs if r["version"] == 1 and r["steps"] > 0]
    v2 = [r for r in runs if r["version"] == 2 and r["steps"] > 0]
    v1_best = max(v1, key=lambda r: r["probe_top1"]) if v1 else None
    v2_time, bound = time_to_reach(v2, v1_best["probe_top1"]) if v1_best and v2 else (None, False)
    return {
        "matmul_peak_gflops": peak, "threads": torch.get_num_threads(), "runs": runs,
        "v1_best": v1_best, "v2_time_to_v1_best_s": v2_time,
        "speedup": None if v2_time is None else v1_best["train_time_s"] / v2_time,
        "speedup_is_lower_bound": bound,
    }


def print_table(summary: dict) -> None:
    print(f"\nmatmul peak (fp32, this run): {summary['matmul_peak_gflops']:.1f} GFLOP/s; "
          f"{platform.processor() or platform.machine()}")
    print(f"{'version':>7} {'updates':>7} {'time s':>8} {'probe top-1':>11} {'final loss':>10}")
    for r in summary["runs"]:
        loss = "—" if r["final_loss"] is None else f"{r['final_loss']:.3f}"
        print(f"{r['version']:>7} {r['steps']:>7} {r['train_time_s']:>8.1f} {r['probe_top1']:>11.3f} {loss:>10}")
    best, v2_time = summary["v1_best"], summary["v2_time_to_v1_best_s"]
    if best is None or not any(r["version"] == 2 and r["steps"] > 0 for r in summary["runs"]):
        print("no speed-up: the budgets hold no pretraining run of one of the versions (0 = random init only)")
    elif v2_time is None:
        print(f"data2vec 2.0 never reached 1.0's best probe accuracy ({best['probe_top1']:.3f}) within these budgets")
    else:
        at_least = "at least " if summary["speedup_is_lower_bound"] else ""
        within = "within its first budget, " if summary["speedup_is_lower_bound"] else "after "
        print(f"1.0 best {best['probe_top1']:.3f} after {best['train_time_s']:.1f} s; 2.0 reaches it {within}"
              f"{v2_time:.1f} s: speed-up {at_least}{summary['speedup']:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="0,50,100,200,400", help="comma-separated update budgets")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON to write")
    parser.add_argument("--rescore", type=Path, help="recompute the summary from this JSON's runs; no training")
    args = parser.parse_args()
    params = load_params(args.params)
    if args.rescore:  # the table and speed-up again, from the runs an earlier invocation wrote
        saved = json.loads(args.rescore.read_text())
        if not isinstance(saved, dict) or not {"runs", "matmul_peak_gflops"} <= saved.keys():
            raise SystemExit(f"{args.rescore}: expected this script's JSON, with keys 'runs' and 'matmul_peak_gflops'")
        summary = summarise(saved["runs"], saved["matmul_peak_gflops"])
        print_table(summary)
        atomic_write_json(args.out, summary)
        print(f"wrote {args.out}")
        return 0
    budgets = [int(s) for s in args.steps.split(",")]
    peak = matmul_peak_gflops()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="d2v-tta-") as tmp:
        for version in (1, 2):
            for steps in budgets:
                runs.append(one_run(params, version, steps, Path(tmp)))
                print(f"[bench] v{version} {steps} updates: {runs[-1]}", flush=True)
    summary = summarise(runs, peak)
    print_table(summary)
    atomic_write_json(args.out, summary)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
