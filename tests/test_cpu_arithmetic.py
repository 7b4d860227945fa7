"""The CPU arithmetic pins: opt-in, set before torch loads, never over the user's own settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from d2v import cpu_arithmetic
from d2v.errors import ConfigError

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})


ON = {cpu_arithmetic.MODE_ENV: "avx2"}


def test_native_arithmetic_is_the_default() -> None:
    env: dict[str, str] = {}
    assert cpu_arithmetic.pin(env, AVX2, read_limit=lambda: None) == {} and env == {}
    explicit = {cpu_arithmetic.MODE_ENV: "native"}
    assert cpu_arithmetic.pin(explicit, AVX2, read_limit=lambda: None) == {} and set(explicit) == {cpu_arithmetic.MODE_ENV}


def test_a_cpu_limit_under_the_core_count_sizes_the_thread_pools() -> None:
    assert cpu_arithmetic.pin({}, AVX2, read_limit=lambda: 0.68) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    own = {"OMP_NUM_THREADS": "4"}  # the user's count wins, for both pools (they go together)
    assert cpu_arithmetic.pin(own, AVX2, read_limit=lambda: 0.68) == {} and own == {"OMP_NUM_THREADS": "4"}
    asked = {cpu_arithmetic.THREADS_ENV: "2"}  # so does D2V_CPU_THREADS
    assert cpu_arithmetic.pin(asked, AVX2, read_limit=lambda: 0.68) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def test_avx2_mode_pins_every_library_at_avx2() -> None:
    env = dict(ON)
    applied = cpu_arithmetic.pin(env, AVX2, read_limit=lambda: None)  # no CPU limit: only the ISA pins
    assert applied == {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert env == ON | applied


def test_user_settings_win_and_an_unknown_mode_is_refused() -> None:
    env = {**ON, "MKL_CBWR": "COMPATIBLE"}
    cpu_arithmetic.pin(env, AVX2)
    assert env["MKL_CBWR"] == "COMPATIBLE" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    with pytest.raises(ConfigError, match=r"D2V_CPU_ARITHMETIC='avx512': expected one of native, avx2"):
        cpu_arithmetic.pin({cpu_arithmetic.MODE_ENV: "avx512"}, AVX2)


def test_no_avx2_leaves_the_libraries_alone_and_threads_are_fixed_on_request() -> None:
    env = {**ON, cpu_arithmetic.THREADS_ENV: "2"}
    assert cpu_arithmetic.pin(env, frozenset({"sse2"})) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    with pytest.raises(ConfigError, match=r"D2V_CPU_THREADS='two': expected a positive number of threads"):
        cpu_arithmetic.pin({cpu_arithmetic.THREADS_ENV: "two"}, AVX2)


def _torch_after_pin(extra_env: dict[str, str]) -> dict[str, object]:
    code = (
        "import json; from d2v import cpu_arithmetic; cpu_arithmetic.pin(); import torch; "
        "print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), 'threads': torch.get_num_threads()}))"
    )
    env = {"PATH": "/usr/bin:/bin", **extra_env}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif("avx2" not in cpu_arithmetic._cpu_flags(), reason="needs an x86-64 CPU with AVX2")
def test_torch_runs_the_pinned_path_on_request() -> None:
    assert _torch_after_pin(ON)["capability"] == "AVX2"
    assert _torch_after_pin({**ON, "ATEN_CPU_CAPABILITY": "default"})["capability"] == "DEFAULT"  # the user's choice
    assert _torch_after_pin({cpu_arithmetic.THREADS_ENV: "1"})["threads"] == 1
