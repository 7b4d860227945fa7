"""The FLOPs of the demo's pretraining and evaluation stages, and the least time they can take.

Counts with torch's FlopCounterMode (matmuls, convolutions and attention; elementwise work counts
nothing) what each compute stage of `dvc repro` does, as params.yaml sets it up, on the workspace's
prepared data and pretrained checkpoints (run `dvc repro` or `make demo` first):

- pretrain@<m>: one update (forward and backward) of the stage's model on its first real batch,
  times the updates it runs (max_steps x grad_accum). Every batch has the same shape (fixed-size
  images, text blocks and speech crops), so every update does the same work.
- evaluate@<m>: the stage's own evaluation (`d2v.eval.stage.evaluate_modality`), run once in this
  process with side_by_side off so that the counter sees every run: pretrained, random init and
  the input baseline. Its records go to a temporary directory; metrics/ is not touched.

The floor of a stage is its FLOPs divided by a matmul peak: the time it would take with every
FLOP at the peak. It is printed for this machine's fp32 peak (measured in the same run) and for
each `--peak` (default 45 GFLOP/s, the slow 2-core machine of issue 27). With a
bench_demo_stages.py JSON (default: benchmarks/results/demo_stages.json, if there) the table adds
each stage's measured seconds and the share of that run's peak it reached. Data stages, report and
start-up do no counted FLOPs and are left out. Writes benchmarks/results/demo_flops.json. Without
the checkpoints (a fresh clone) it prints "skipped" and exits 0, so `make bench` goes on.

    python benchmarks/bench_demo_flops.py [--peak 45 --peak 150] [--stages FILE.json] [--modalities text]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "demo_flops.json"
STAGES = HERE / "results" / "demo_stages.json"
MODALITIES = ("image", "speech", "text")

sys.path.insert(0, str(HERE))
from bench_train_step import matmul_peak_gflops  # noqa: E402  (a sibling script)

from d2v.atomic import atomic_write_json  # noqa: E402
from d2v.config import Params, load_params  # noqa: E402
from d2v.errors import D2VError  # noqa: E402
from d2v.layout import Layout  # noqa: E402


def counted(work: object) -> int:
    """FLOPs of calling `work()` (a callable), as FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with counter:
        work()  # type: ignore[operator]
    return int(counter.get_total_flops())


def pretrain_flops(params: Params, modality: str, layout: Layout) -> int:
    """FLOPs of the pretrain stage: one update on the first real batch x the updates it runs."""
    from d2v.train.run import build_pretraining_model, pretraining_data

    cfg = getattr(params.pretrain, modality)
    root = layout.prepared(modality)
    torch.manual_seed(params.seed)
    model = build_pretraining_model(modality, getattr(params.model, modality), root)
    data = pretraining_data(modality, root, model, cfg, params.seed)
    batch = data.collate([data.dataset[i] for i in range(cfg.batch_size)])
    generator = torch.Generator().manual_seed(params.seed)

    def update() -> None:
        model(batch, generator=generator).loss.backward()

    return counted(update) * cfg.max_steps * cfg.grad_accum


def evaluate_flops(params: Params, modality: str, layout: Layout) -> int:
    """FLOPs of the evaluate stage: its whole evaluation, every run in this process."""
    from d2v.eval.stage import evaluate_modality

    def evaluate() -> None:
        with tempfile.TemporaryDirectory(prefix="d2v-demo-flops-") as out:
            evaluate_modality(
                modality, getattr(params.model, modality), getattr(params.evaluate, modality),
                data_root=layout.prepared(modality), checkpoint=layout.checkpoint(modality), out_dir=Path(out),
                side_by_side=False,
            )  # fmt: skip

    return counted(evaluate)


def measured_seconds(path: Path | None) -> tuple[dict[str, float], float | None]:
    """stage -> seconds, and that run's peak, from a bench_demo_stages.py JSON ({}, None without one)."""
    if path is None or not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {row["stage"]: float(row["seconds"]) for row in data["stages"]}, float(data["matmul_peak_gflops"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--stages {path}: not a bench_demo_stages.py result ({exc!r})") from None


def table_rows(flops: dict[str, int], peaks: list[float], seconds: dict[str, float], run_peak: float | None) -> list[dict]:
    """One row per stage (most FLOPs first), then the total: TFLOP, floor seconds at every peak and,
    where measured, the seconds and the share of the measuring run's peak."""
    rows = []
    names = sorted(flops, key=lambda name: -flops[name])
    for name in [*names, "total"]:
        total = sum(flops.values()) if name == "total" else flops[name]
        row: dict = {"stage": name, "tflop": round(total / 1e12, 3)}
        row["floor_s"] = {f"{peak:g}": round(total / (peak * 1e9), 1) for peak in peaks}
        took = sum(seconds.get(n, 0.0) for n in names) if name == "total" else seconds.get(name)
        if took and run_peak:
            row["measured_s"] = round(took, 1)
            row["share_of_peak"] = round(total / (run_peak * 1e9) / took, 3)
        rows.append(row)
    return rows


def print_table(rows: list[dict], peaks: list[float]) -> None:
    floors = "".join(f" {f'floor@{peak:g}':>11}" for peak in peaks)
    print(f"\n{'stage':<18} {'TFLOP':>7}{floors} {'measured s':>11} {'% of peak':>10}")
    for row in rows:
        cells = "".join(f" {row['floor_s'][f'{peak:g}']:>11.1f}" for peak in peaks)
        measured = f"{row['measured_s']:>11.1f} {100 * row['share_of_peak']:>9.0f}%" if "measured_s" in row else f"{'-':>11} {'-':>10}"
        print(f"{row['stage']:<18} {row['tflop']:>7.2f}{cells} {measured}")
    print("floor@P: seconds at P GFLOP/s with every FLOP at the peak (no stage gets there)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak", type=float, action="append", metavar="GFLOPS",
                        help="also print the floor at this matmul peak (repeatable; default 45)")
    parser.add_argument("--stages", type=Path, default=STAGES, help="a bench_demo_stages.py JSON for measured seconds")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, default=list(MODALITIES))
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    layout = Layout.from_data(params.data)
    missing = [str(layout.checkpoint(m)) for m in args.modalities if not layout.checkpoint(m).is_file()]
    if missing:  # `make bench` on a fresh clone: say what is missing and let the other scripts run
        print(f"skipped: no pretrained checkpoint at {', '.join(missing)}; run `dvc repro` (or make demo) first")
        return
    peak_now = matmul_peak_gflops()
    print(f"fp32 matmul peak measured now: {peak_now:.1f} GFLOP/s")
    flops: dict[str, int] = {}
    for modality in args.modalities:
        for stage, count in (("pretrain", pretrain_flops), ("evaluate", evaluate_flops)):
            start = time.perf_counter()
            try:
                flops[f"{stage}@{modality}"] = count(params, modality, layout)
            except D2VError as exc:
                raise SystemExit(f"{stage}@{modality}: {exc}") from None
            print(f"{stage}@{modality}: {flops[f'{stage}@{modality}'] / 1e12:.2f} TFLOP "
                  f"(counted in {time.perf_counter() - start:.0f} s)", flush=True)
    peaks = [round(peak_now, 1), *(args.peak or [45.0])]
    seconds, run_peak = measured_seconds(args.stages)
    rows = table_rows(flops, peaks, seconds, run_peak)
    print_table(rows, peaks)
    if run_peak:
        print(f"measured: {args.stages} (its run's peak {run_peak:g} GFLOP/s)")
    atomic_write_json(RESULTS, {"matmul_peak_gflops": round(peak_now, 1), "peaks": peaks,
                                "stages_json": str(args.stages) if run_peak else None, "rows": rows})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
