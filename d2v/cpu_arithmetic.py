"""An opt-in single CPU arithmetic path on x86-64 machines, for byte-identical outputs between like machines.

PyTorch's CPU kernels pick their code path from the CPU they run on, and the paths round
differently. Measured on this project's 2-core AVX2 machine (10 tiny pretraining updates, weights
hashed; docs/results.md, "Across machines"): ATen's vectorised kernels at the `default` capability
instead of AVX2, oneDNN capped at SSE4.1, MKL in its SSE2 'COMPATIBLE' mode, or 1 thread instead of
2 each gave different weights. So did sentencepiece's trainer at 1, 2 or 4 threads (d2v fixes it at
2).

`D2V_CPU_ARITHMETIC=avx2` caps all three libraries at AVX2 before torch is imported (the `d2v` entry
point calls `pin()`):
- MKL's conditional numerical reproducibility (MKL_CBWR=AVX2);
- ATen's CPU capability (ATEN_CPU_CAPABILITY=avx2);
- oneDNN's ISA (ONEDNN_MAX_CPU_ISA=AVX2).
It is not the default (`native`, the libraries' own choice) because it bought less than it cost:
on a 2-core AVX-512 Intel Xeon it halved the fp32 matmul peak (238 -> 123 GFLOP/s), and that
machine's pinned demo still wrote weights that differ in the last bits from the AMD AVX2 machine's
(same commit and data). Use it between machines of one CPU family that must share a DVC cache.
D2V_CPU_THREADS fixes the thread count in either mode. Without it (and without OMP_NUM_THREADS or
MKL_NUM_THREADS), a cgroup CPU limit below the core count (a container's `--cpus`) sets the thread
count to the limit rounded to whole cores, at least 1 (d2v/cpu_limit.py). Variables the user has
already set are left alone.

Not covered: the thread count when D2V_CPU_THREADS is unset (torch uses one thread per core, or
per core of a CPU limit, so machines with different core counts or limits differ), CPUs without
AVX2, non-x86 CPUs, and CUDA, whose kernels differ by GPU model and library version.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Callable

from d2v import cpu_limit
from d2v.errors import ConfigError

MODE_ENV = "D2V_CPU_ARITHMETIC"  # "native" (default) or "avx2"
MODES = ("native", "avx2")
THREADS_ENV = "D2V_CPU_THREADS"
PINS = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin(
    environ: dict[str, str] | None = None,
    cpu_flags: frozenset[str] | None = None,
    read_limit: Callable[[], float | None] = cpu_limit.limit_cores,
) -> dict[str, str]:
    """Set the pins in `environ` (default: this process's); returns what was set. `read_limit`
    gives the CPU limit in cores (None: none); by default, this process's cgroup's."""
    env = os.environ if environ is None else environ
    mode = env.get(MODE_ENV, "native") or "native"
    if mode not in MODES:
        raise ConfigError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    wanted: dict[str, str] = {}
    if mode == "avx2" and "avx2" in (_cpu_flags() if cpu_flags is None else cpu_flags):
        wanted.update(PINS)
    threads = env.get(THREADS_ENV)
    if threads:
        if not threads.isdigit() or int(threads) < 1:
                raise ConfigError(f"{THREADS_ENV}={threads!r}: expected a positive number of threads")
        wanted.update({name: threads for name in THREAD_VARS})
    elif not any(name in env for name in THREAD_VARS):
        # Under a cgroup CPU limit below the core count, one thread per core throttles itself
        # (d2v/cpu_limit.py); size the pools by the limit instead.
        fitted = cpu_limit.threads_for_limit(read_limit(), cpu_limit.usable_cores())
        if fitted is not None:
            wanted.update({name: str(fitted) for name in THREAD_VARS})
    applied = {name: value for name, value in wanted.items() if name not in env}
    env.update(applied)
    return applied


def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux x86-64); empty elsewhere, which leaves the libraries alone."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()
