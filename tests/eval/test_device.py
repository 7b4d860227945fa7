"""d2v.eval.device: evaluate.device / precision / num_workers / compile resolved into a runtime.

The CUDA branches are reached by pretending torch sees a GPU (monkeypatched); nothing here runs on
one. GPU execution itself is checked by benchmarks/gpu_check.sh."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from d2v.config import load_params
from d2v.errors import ConfigError
from d2v.eval.config import EvaluateConfig
from d2v.eval.data import IN_PROCESS, Loading
from d2v.eval.device import CPU_FP32, EvalRuntime, resolve_device, resolve_precision

from eval_standins import PatchEmbed, StandInEncoder

REPO = Path(__file__).resolve().parents[2]
CUDA0 = torch.device("cuda", 0)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def evaluate_config(**changes: object) -> EvaluateConfig:
    return dataclasses.replace(load_params(REPO / "params.yaml").evaluate, **changes)  # type: ignore[arg-type]


def test_auto_is_cpu_without_a_gpu_and_cuda_with_one(no_gpu, monkeypatch) -> None:
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == CUDA0 == resolve_device("cuda")  # an explicit index: params say cuda:0
    assert resolve_device("cpu") == torch.device("cpu")  # cpu stays cpu with a GPU there


def test_cuda_without_one_is_a_clear_error(no_gpu) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.device: cuda was asked for, but .*; available: cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"evaluate\.device: expected auto, cpu or cuda, got 'gpu'"):
        resolve_device("gpu")


def test_precision_follows_pretraining_autocast(one_gpu, monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None and resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16  # asked for explicitly: honoured, slow as it is
    assert resolve_precision("auto", CUDA0) is torch.bfloat16 and resolve_precision("fp32", CUDA0) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert resolve_precision("auto", CUDA0) is None  # auto falls back to what works there
    with pytest.raises(ConfigError, match=r"evaluate\.precision: bf16 was asked for, but Tesla T4 has no bf16"):
        resolve_precision("bf16", CUDA0)
    with pytest.raises(ConfigError, match=r"evaluate\.precision: expected auto, fp32 or bf16, got 'fp16'"):
        resolve_precision("fp16", cpu)


def test_the_defaults_are_the_cpu_demo_unchanged(no_gpu) -> None:
    cfg = load_params(REPO / "params.yaml").evaluate
    assert (cfg.device, cfg.precision, cfg.num_workers, cfg.compile) == ("auto", "auto", 0, False)
    runtime = EvalRuntime.from_config(cfg)
    assert runtime == CPU_FP32 == EvalRuntime()
    assert runtime.loading == IN_PROCESS and runtime.autocast_dtype is None and not runtime.compile
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a CPU limit under 1.5 CPUs leaves (d2v/cpu_limit.py)
        assert runtime.describe() == "cpu (1 thread), fp32, in-process loading, eager"
        torch.set_num_threads(2)
        assert runtime.describe() == "cpu (2 threads), fp32, in-process loading, eager"
    finally:
        torch.set_num_threads(before)


def test_a_gpu_runtime_pins_memory_and_autocasts(one_gpu) -> None:
    runtime = EvalRuntime.from_config(evaluate_config(num_workers=4, compile=True))
    assert runtime.device == CUDA0 and runtime.autocast_dtype is torch.bfloat16
    assert runtime.loading == Loading(num_workers=4, pin_memory=True)
    assert runtime.describe() == "cuda:0, bf16 autocast, 4 loader workers, compiled"


def test_from_config_fails_before_anything_loads(no_gpu) -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.device: cuda was asked for"):
        EvalRuntime.from_config(evaluate_config(device="cuda"))


def test_params_keys_are_checked_by_the_strict_loader(tmp_path: Path) -> None:
    tree = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))

    def load_with(**evaluate: object) -> EvaluateConfig:
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({**tree, "evaluate": {**tree["evaluate"], **evaluate}}), encoding="utf-8")
        return load_params(path).evaluate

    with pytest.raises(ConfigError, match=r"evaluate\.device: expected one of \['auto', 'cpu', 'cuda'\], got str 'gpu'"):
        load_with(device="gpu")
    with pytest.raises(ConfigError, match=r"evaluate\.precision: expected one of \['auto', 'fp32', 'bf16'\]"):
        load_with(precision="fp16")
    with pytest.raises(ConfigError, match=r"evaluate\.num_workers: must be >= 0 \(0 = load in process\), got -1"):
        load_with(num_workers=-1)
    with pytest.raises(ConfigError, match=r"evaluate\.compile: expected bool"):
        load_with(compile="yes")
    # A params file from before these keys still loads, with the CPU demo's values.
    old = {k: v for k, v in tree["evaluate"].items() if k not in ("device", "precision", "num_workers", "compile")}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({**tree, "evaluate": old}), encoding="utf-8")
    cfg = load_params(path).evaluate
    assert (cfg.device, cfg.precision, cfg.num_workers, cfg.compile) == ("auto", "auto", 0, False)


def test_place_moves_every_tensor_and_leaves_the_rest() -> None:
    meta = EvalRuntime(device=torch.device("meta"))  # a real second device type, present everywhere
    batch = {"image": torch.zeros(2, 1, 8, 8), "label": torch.tensor([0, 1]), "transcript": ["a", "b"]}
    placed = meta.place(batch)
    assert placed["image"].device.type == "meta" and placed["label"].device.type == "meta"
    assert placed["transcript"] == ["a", "b"] and batch["image"].device.type == "cpu"  # the input is not changed
    same = CPU_FP32.place(batch)
    assert same["image"] is batch["image"]  # on the CPU nothing is copied: the demo runs as before


def test_borrowing_never_moves_the_callers_module() -> None:
    encoder = StandInEncoder(PatchEmbed(1, 16, 4), dim=16, depth=2)
    assert CPU_FP32.borrow_module(encoder) is encoder  # already there: no copy
    copy = EvalRuntime(device=torch.device("meta")).borrow_module(encoder)
    assert copy is not encoder and all(p.device.type == "meta" for p in copy.parameters())
    assert all(p.device.type == "cpu" for p in encoder.parameters())


def test_autocast_only_where_asked() -> None:
    with CPU_FP32.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with EvalRuntime(autocast_dtype=torch.bfloat16).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_side_by_side_is_kept_for_the_cpu_demo_only() -> None:
    assert CPU_FP32.side_by_side_blocker() is None
    assert "cuda:0" in str(EvalRuntime(device=CUDA0).side_by_side_blocker())
    assert "evaluate.num_workers is 2" in str(EvalRuntime(loading=Loading(num_workers=2)).side_by_side_blocker())
    assert "evaluate.compile" in str(EvalRuntime(compile=True).side_by_side_blocker())


def test_compile_leaves_parameter_free_modules_eager() -> None:
    from d2v.eval.input_features import RawPixels

    runtime = EvalRuntime(compile=True, compile_backend="eager")
    pixels = RawPixels(64)
    assert runtime.compiled(pixels) is pixels
    encoder = StandInEncoder(PatchEmbed(1, 16, 4), dim=16, depth=2)
    assert runtime.compiled(encoder) is not encoder and CPU_FP32.compiled(encoder) is encoder
