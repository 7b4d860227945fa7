"""Image linear-probe accuracy against pretraining wall time, data2vec 1.0 vs 2.0 (tiny preset).

The paper's headline claim for 2.0 is reaching 1.0's accuracy many times sooner. For each version
and each budget of updates, one full pretraining run of the embedded default's image recipe (its own
cosine schedule over that many updates; `pretrain.image` otherwise unchanged) and the demo's linear
probe on the result (same subsets, same settings as `d2v evaluate image`). The speed-up is the wall
time 1.0 needs for its best probe accuracy over the time 2.0 needs to first reach it (linear
interpolation between 2.0's budgets). Prints a table, writes benchmarks/results/time_to_accuracy.json.

    python benchmarks/bench_time_to_accuracy.py [--steps 50,100,200,400] [--params params.yaml]

Takes about 20 minutes on 2 CPU cores (4 budgets x 2 versions). Needs the prepared image data
(`dvc repro validate@image`).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from d2v.train.run import prepared_meta, run_pretraining

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import matmul_peak_gflops  # noqa: E402  (a sibling script, not a package)

RESULTS = Path(__file__).resolve().parent / "results" / "time_to_accuracy.json"


def probe_accuracy(params, choice, data_root: Path, checkpoint: Path) -> float:
    cfg = params.evaluate.image
    meta = prepared_meta(data_root)
    encoder = load_pretrained("image", choice, data_root, checkpoint)
    splits = {name: ImageDataset(data_root, split) for name, split in IMAGE_SPLITS.items()}
    result = linear_probe(
        encoder, splits, cfg.linear_probe, pooling=cfg.pooling, n_test=cfg.n_test, seed=cfg.seed,
        collate=ImageCollate(meta["mean"], meta["std"]),
    )
    return float(result.metrics["top1"])


def one_run(params, version: int, steps: int, workdir: Path) -> dict[str, float]:
    choice = dataclasses.replace(params.model.image, version=version)
    recipe = dataclasses.replace(params.pretrain.image, max_steps=steps, checkpoint_every=steps,
                                 warmup_steps=min(params.pretrain.image.warmup_steps, steps // 10))
    data_root = Path(params.data.prepared_dir) / "image"
    checkpoint = workdir / f"v{version}-{steps}" / "checkpoint.pt"
    summary = run_pretraining(
        "image", choice, recipe, data_root=data_root, checkpoint=checkpoint,
        metrics_dir=workdir / f"v{version}-{steps}", seed=params.pretrain.resolve_seed(params.seed),
    )
    return {
        "version": version, "steps": steps, "train_time_s": float(summary["train_time_s"]),
        "final_loss": float(summary["final_loss_avg"]),
        "probe_top1": probe_accuracy(params, choice, data_root, checkpoint),
    }


def time_to_reach(points: list[dict[str, float]], accuracy: float) -> float | None:
    """First wall time at which the (time-ordered) curve reaches `accuracy`, linearly interpolated."""
    previous = {"train_time_s": 0.0, "probe_top1": 0.0}
    for point in sorted(points, key=lambda p: p["train_time_s"]):
        if point["probe_top1"] >= accuracy:
            gain = point["probe_top1"] - previous["probe_top1"]
            fraction = 1.0 if gain <= 0 else (accuracy - previous["probe_top1"]) / gain
            return previous["train_time_s"] + fraction * (point["train_time_s"] - previous["train_time_s"])
        previous = point
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="50,100,200,400", help="comma-separated update budgets")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    budgets = [int(s) for s in args.steps.split(",")]
    peak = matmul_peak_gflops()
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="d2v-tta-") as tmp:
        for version in (1, 2):
            for steps in budgets:
                runs.append(one_run(params, version, steps, Path(tmp)))
                print(f"[bench] v{version} {steps} updates: {runs[-1]}", flush=True)
    v1 = [r for r in runs if r["version"] == 1]
    v2 = [r for r in runs if r["version"] == 2]
    v1_best = max(v1, key=lambda r: r["probe_top1"])
    v2_time = time_to_reach(v2, v1_best["probe_top1"])
    speedup = None if v2_time is None else v1_best["train_time_s"] / v2_time

    print(f"\nmatmul peak (fp32, this run): {peak:.1f} GFLOP/s; {platform.processor() or platform.machine()}")
    print(f"{'version':>7} {'updates':>7} {'time s':>8} {'probe top-1':>11} {'final loss':>10}")
    for r in runs:
        print(f"{r['version']:>7} {r['steps']:>7} {r['train_time_s']:>8.1f} {r['probe_top1']:>11.3f} {r['final_loss']:>10.3f}")
    if v2_time is None:
        print(f"data2vec 2.0 never reached 1.0's best probe accuracy ({v1_best['probe_top1']:.3f}) within these budgets")
    else:
        print(f"1.0 best {v1_best['probe_top1']:.3f} after {v1_best['train_time_s']:.1f} s; 2.0 reaches it after "
              f"{v2_time:.1f} s: speed-up {speedup:.1f}x")
    atomic_write_json(RESULTS, {
        "matmul_peak_gflops": peak, "threads": torch.get_num_threads(), "runs": runs,
        "v1_best": v1_best, "v2_time_to_v1_best_s": v2_time, "speedup": speedup,
    })
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
