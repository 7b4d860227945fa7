"""Where `make demo`'s time goes: every DVC stage of a fresh `dvc repro`, timed, beside the matmul peak.

Runs the whole pipeline once, from nothing, in a temporary git copy of the repository's tracked files
(the workspace's data/, models/ and metrics/ are not touched). Each stage's time runs from DVC's
"Running stage" line to the next stage's, so it includes the stage's own Python and torch start-up
and DVC's hashing of its outputs. The start-up alone is measured too: `d2v --version` (no torch)
and a bare `import torch`. Prints a table, slowest stage first, and writes
benchmarks/results/demo_stages.json.

With `--cpu-share F` everything runs on a fraction F of this machine's CPU time (a cgroup CPU limit,
`cpu_share.py`; root only): a container limited to F x cores CPUs, and a floor for a machine whose
cores are F times as fast (single-threaded work loses less under a shared limit;
docs/benchmarks.md). The matmul peak is then measured inside the limit, before and after the run,
and the JSON goes to demo_stages_share<F>.json.

    python benchmarks/bench_demo_stages.py [--keep] [--cpu-share 0.1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "demo_stages.json"
BIN = Path(sys.executable).parent
RUNNING = re.compile(r"^Running stage '([^']+)'")

sys.path[:0] = [str(HERE), str(REPO / "tests" / "pipelines")]
from bench_train_step import matmul_peak_gflops  # noqa: E402  (a sibling script)
from cpu_share import CpuShare, CpuShareError, preexec  # noqa: E402
from flow_stack import commit_all, copy_tracked_files  # noqa: E402  (the flow tests' repository copy)


def timed_repro(
    work: Path, env: dict[str, str], limit: CpuShare | None = None
) -> tuple[list[tuple[str, float]], float]:
    """(stage, seconds) in the order DVC ran them, and the whole `dvc repro`'s wall time."""
    start = time.monotonic()
    marks: list[tuple[str, float]] = []
    # Its own session, so that an interrupted benchmark stops DVC and every stage process under it.
    with subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=work, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                          preexec_fn=preexec(limit)) as proc:  # fmt: skip
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                match = RUNNING.match(line)
                if match:
                    marks.append((match.group(1), time.monotonic()))
                    print(f"  {time.monotonic() - start:7.1f} s  {match.group(1)}", flush=True)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        if proc.wait() != 0:
            raise SystemExit(f"dvc repro failed in {work} (exit {proc.returncode}); rerun with --keep to look")
    end = time.monotonic()
    ends = [t for _, t in marks[1:]] + [end]
    return [(name, round(stop - begin, 1)) for (name, begin), stop in zip(marks, ends)], round(end - start, 1)


def peak_in(limit: CpuShare | None, env: dict[str, str]) -> float:
    """The fp32 matmul peak as the pipeline's processes see it: inside the CPU limit when there is one."""
    if limit is None:
        return matmul_peak_gflops()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from bench_train_step import matmul_peak_gflops as p; print(p())")
    done = subprocess.run([sys.executable, "-c", code, str(HERE)], env=env, check=True, capture_output=True,
                          text=True, preexec_fn=limit.join)  # fmt: skip
    return float(done.stdout.split()[-1])


def startup_seconds(env: dict[str, str], limit: CpuShare | None = None) -> dict[str, float]:
    """What every stage pays before its own work: the d2v CLI, and torch's import."""
    def best_of(cmd: list[str], runs: int = 3) -> float:
        times = []
        for _ in range(runs):
            begin = time.monotonic()
            subprocess.run(cmd, env=env, check=True, capture_output=True,
                           preexec_fn=preexec(limit))
            times.append(time.monotonic() - begin)
        return round(min(times), 2)

    return {"d2v_version_s": best_of([str(BIN / "d2v"), "--version"]),
            "import_torch_s": best_of([sys.executable, "-c", "import torch"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    parser.add_argument("--cpu-share", type=float, default=None, metavar="F",
                        help="run on a fraction F in (0, 1] of this machine's CPU time (a cgroup limit; root only)")
    args = parser.parse_args()
    # A plain kill (SIGTERM) then cleans up as Ctrl-C does: the run's processes, copy and cgroup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "TQDM_DISABLE": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with contextlib.ExitStack() as stack:
        try:
            limit = None if args.cpu_share is None else stack.enter_context(CpuShare(args.cpu_share))
        except CpuShareError as exc:
            raise SystemExit(f"--cpu-share: {exc}") from exc
        peaks = [peak_in(limit, env)]
        where = "" if limit is None else f" inside a {args.cpu_share:g} CPU share"
        print(f"fp32 matmul peak measured now{where}: {peaks[0]:.1f} GFLOP/s; "
              "running the whole pipeline in a fresh copy")
        work = Path(tempfile.mkdtemp(prefix="d2v-demo-stages-"))
        try:
            copy_tracked_files(work)
            commit_all(work, "bench")
            stages, total = timed_repro(work, env, limit)
        finally:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        peaks.append(peak_in(limit, env))
        startup = startup_seconds(env, limit)
        throttled = None if limit is None else round(limit.throttled_seconds(), 1)
    print(f"\n{'stage':<22} {'seconds':>8} {'share':>6}")
    for name, seconds in sorted(stages, key=lambda row: -row[1]):
        print(f"{name:<22} {seconds:>8.1f} {100 * seconds / total:>5.1f}%")
    print(f"{'dvc repro (total)':<22} {total:>8.1f}")
    print(f"fp32 matmul peak{where}: {peaks[0]:.1f} GFLOP/s before, {peaks[1]:.1f} after")
    print(f"start-up per stage: d2v --version {startup['d2v_version_s']} s, import torch {startup['import_torch_s']} s "
          f"(x {len(stages)} stages)")
    from d2v.atomic import atomic_write_json

    results = RESULTS if limit is None else RESULTS.with_name(f"demo_stages_share{args.cpu_share:g}.json")
    atomic_write_json(results, {
        "matmul_peak_gflops": round(peaks[0], 1),
        "matmul_peak_gflops_after": round(peaks[1], 1),
        "cpu_share": args.cpu_share,
        "throttled_s": throttled,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "total_s": total,
        "stages": [{"stage": name, "seconds": seconds} for name, seconds in stages],
        "startup": startup,
    })
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
