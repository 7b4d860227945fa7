#!/usr/bin/env bash
# The GPU check in one command: bf16 step throughput and MFU at the base preset (image, speech,
# text), 2-process DDP against 1 process, kill-and-resume and evaluation on the device. Prints a
# table, writes benchmarks/results/gpu_check.json, exits non-zero if a check fails.
#
#   bash benchmarks/gpu_check.sh            # needs CUDA; under 10 minutes on one H100
#   bash benchmarks/gpu_check.sh --smoke    # the same code paths on CPU at the tiny preset
#
# Each part runs under its own timeout (benchmarks/gpu_check.py, Budget), and those add up to less
# than 10 minutes. Needs only the repository and its virtual environment (`make setup`): the check
# prepares its own tiny image data in a temporary directory. PYTHON overrides the interpreter.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "gpu_check.sh: no interpreter at $python: run 'make setup' first, or set PYTHON" >&2
    exit 2
fi
cd "$repo"
export DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false
exec "$python" benchmarks/gpu_check.py "$@"
