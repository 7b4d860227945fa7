"""`pretrain.<m>.compile: true`: the loop's forward runs through torch.compile (dynamo, and inductor's
C++ kernels on CPU) and trains as eager does.

Cost: inductor compiles the stand-in's graphs (forward and backward, split where the model turns a
tensor into a Python float for its logs) with gcc: ~30 s on 2 busy cores with a cold cache, ~4 s
with inductor's on-disk cache (/tmp/torchinductor_<user>) warm.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo
import torch._inductor.config as inductor_config
from step_log import step_rows

from d2v.train._selftest import FINGERPRINT, StandInModel, SyntheticDataset, tiny_config
from d2v.train.checkpoint import load_checkpoint
from d2v.train.distributed import DistEnv
from d2v.train.loop import RunPaths, pretrain

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# Inductor fuses and reorders float32 arithmetic: the same maths, not the same bits. Measured: the
# losses of 3 updates agree to ~1e-7 relative; 1e-5 leaves room for other compilers and CPUs.
RTOL, ATOL = 1e-5, 1e-6


def _train(out: Path, compile: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = tiny_config(max_steps=3, grad_accum=1, checkpoint_every=3, compile=compile)
    paths = RunPaths(out / "ckpt.pt", out / "metrics")
    pretrain(StandInModel(), SyntheticDataset(16), cfg, modality="image", fingerprint=FINGERPRINT,
             seed=0, paths=paths, env=CPU)
    losses = [float(row[1]) for row in step_rows(paths.metrics_dir / "image")[1:]]
    return losses, load_checkpoint(paths.checkpoint)["model"]


def test_a_compiled_forward_trains_like_eager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Inductor draws random numbers (masks, dropout) with its own generator unless told to call the
    # eager ops; with fallback_random it draws exactly what eager draws, so losses can be compared.
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    monkeypatch.setattr(inductor_config, "compile_threads", 1)  # no pool of compile workers on 2 cores
    eager_losses, eager_weights = _train(tmp_path / "eager", compile=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        compiled_losses, compiled_weights = _train(tmp_path / "compiled", compile=True)
        captured = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()  # no compiled frames left for other tests
    assert captured > 0, "torch.compile traced nothing: the forward ran eagerly"
    assert len(compiled_losses) == 3
    assert compiled_losses == pytest.approx(eager_losses, rel=RTOL, abs=ATOL)
    assert compiled_weights.keys() == eager_weights.keys()  # the unwrapped model's names, no _orig_mod.
    for name, value in eager_weights.items():
        torch.testing.assert_close(compiled_weights[name], value, rtol=RTOL, atol=ATOL, msg=name)
