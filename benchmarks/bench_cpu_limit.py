"""Training steps under a cgroup CPU limit: one thread per core (torch's default) against the thread
count d2v fits to the limit (d2v/cpu_limit.py).

Each row is `bench_train_step.bench` run in a child process inside a CPU limit (`cpu_share.py`;
root and a writable cgroup file system only), once with OMP_NUM_THREADS = the core count and once
with the fitted count; the matmul peak is measured in the same child. Prints a table and writes
benchmarks/results/cpu_limit.json.

    python benchmarks/bench_cpu_limit.py [--cpu-share 0.34] [--steps 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "cpu_limit.json"
ROWS = (("image", 1, None, None), ("image", 2, 1, 0.8), ("speech", 1, None, None), ("speech", 2, 1, 0.8),
        ("text", 1, None, None), ("text", 2, 1, 0.8))  # fmt: skip

sys.path[:0] = [str(HERE)]
from cpu_share import CpuShare, CpuShareError, preexec  # noqa: E402  (a sibling script)

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from bench_train_step import bench, demo_overrides, matmul_peak_gflops
rows = json.loads(sys.argv[2])
out = {"threads": torch.get_num_threads(), "peak": matmul_peak_gflops(), "rows": []}
for modality, version, clones, ratio in rows:
    row = bench(modality, version, steps=int(sys.argv[3]), warmup=2, clones=clones, mask_ratio=ratio,
                overrides=demo_overrides(modality, version))
    out["rows"].append({"modality": modality, "version": version, "s_per_step": row["s_per_step"]})
print(json.dumps(out))
"""


def run_child(threads: int, steps: int, limit: CpuShare | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(HERE), json.dumps(ROWS), str(steps)], env=env,
                          capture_output=True, text=True, preexec_fn=preexec(limit))  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed (threads {threads}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-share", type=float, default=0.34, metavar="F",
                        help="fraction of this machine's CPU time the limit allows (default 0.34)")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from d2v.atomic import atomic_write_json
    from d2v.cpu_limit import threads_for_limit, usable_cores

    cores = usable_cores()
    fitted = threads_for_limit(args.cpu_share * cores, cores) or cores
    with contextlib.ExitStack() as stack:
        try:
            limit = stack.enter_context(CpuShare(args.cpu_share, cores=cores))
        except CpuShareError as exc:  # `make bench` runs every script: say why, and go on
            print(f"skipped: {exc}")
            return
        runs: dict[str, dict] = {
            "unlimited, one thread per core": run_child(cores, args.steps, None),  # outside the group
            "limited, one thread per core": run_child(cores, args.steps, limit),
            f"limited, {fitted} thread(s) (d2v's fit)": run_child(fitted, args.steps, limit),
        }
    names = list(runs)
    print(f"CPU limit: {args.cpu_share:g} of {cores} cores = {args.cpu_share * cores:.2f} cores; s/step")
    headers = [f"{name} ({run['threads']} thr, peak {run['peak']:.0f} GFLOP/s)" for name, run in runs.items()]
    print(" | ".join(["row", *headers, "fit's speed-up under the limit"]))
    table = []
    for i, (modality, version, clones, ratio) in enumerate(ROWS):
        times = [runs[name]["rows"][i]["s_per_step"] for name in names]
        label = f"{modality} v{version}" + ("" if clones is None else f" M={clones} mask {ratio}")
        speedup = times[1] / times[2]
        print(" | ".join([label] + [f"{t:.4f}" for t in times] + [f"{speedup:.2f}x"]))
        table.append({"row": label, **{name: t for name, t in zip(names, times)}, "fit_speedup": round(speedup, 3)})
    atomic_write_json(RESULTS, {"cpu_share": args.cpu_share, "cores": cores, "fitted_threads": fitted,
                                "peaks": {name: round(run["peak"], 1) for name, run in runs.items()}, "rows": table})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
