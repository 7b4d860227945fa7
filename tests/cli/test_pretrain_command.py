"""`d2v pretrain`: one process, or a re-launch of itself under torchrun (d2v/train/launch.py)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from d2v.cli import main
from d2v.train import launch
from d2v.train.launch import NPROC_ENV, TORCHRUN

REPO = Path(__file__).resolve().parents[2]
PARAMS = str(REPO / "params.yaml")


@pytest.fixture
def torchrun_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Commands `d2v pretrain` would start; each 'exits' with status 3."""
    calls: list[list[str]] = []
    for name in (NPROC_ENV, "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "D2V_NNODES", "D2V_INIT_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)

    def fake_run(cmd: list[str], check: bool) -> subprocess.CompletedProcess:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    return calls


def test_more_than_one_process_relaunches_under_torchrun(torchrun_calls: list[list[str]]) -> None:
    assert main(["pretrain", "image", "--params", PARAMS, "--nproc-per-node", "2", "--resume"]) == 3
    [cmd] = torchrun_calls
    assert cmd == [*TORCHRUN, "--nproc_per_node=2", "--standalone", "-m", "d2v.cli", "pretrain", "image",
                   "--params", PARAMS, "--models-dir", "models", "--metrics-dir", "metrics/pretrain", "--resume"]


def test_the_process_count_comes_from_the_environment(
    torchrun_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NPROC_ENV, "3")
    main(["pretrain", "text", "--params", PARAMS])
    assert torchrun_calls[0][len(TORCHRUN)] == "--nproc_per_node=3"
    main(["pretrain", "text", "--params", PARAMS, "--nproc-per-node", "4"])  # the option wins
    assert torchrun_calls[1][len(TORCHRUN)] == "--nproc_per_node=4"


def test_multi_node_without_a_rendezvous_is_a_one_line_error(
    torchrun_calls: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pretrain", "image", "--params", PARAMS, "--nnodes", "2"]) == 2
    assert "--rdzv-endpoint" in capsys.readouterr().err and not torchrun_calls


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _tiny_image_project(tmp_path: Path) -> Path:
    """params.yaml for a few dozen random 28x28 images and a 2-update pretraining, all under tmp_path."""
    fmnist = tmp_path / "fmnist"
    fmnist.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 8)):
        _write_idx(fmnist / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(fmnist / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(prepared_dir=str(tmp_path / "prepared"), reports_dir=str(tmp_path / "validation"))
    params["data"]["image"].update(fashion_mnist_dir=str(fmnist), train_size=40, valid_size=8, test_size=0,
                                   shard_size=16)
    params["pretrain"]["image"].update(batch_size=4, max_steps=2, warmup_steps=1, checkpoint_every=2, log_every=1)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.slow
def test_two_processes_train_one_model_through_real_torchrun(tmp_path: Path) -> None:
    params = _tiny_image_project(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if k != "LOCAL_RANK"}, "OMP_NUM_THREADS": "1", "CI": "true",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cli = [sys.executable, "-m", "d2v.cli"]
    subprocess.run([*cli, "data", "prepare", "image", "--params", str(params)], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    done = subprocess.run([*cli, "pretrain", "image", "--params", str(params), "--nproc-per-node", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "torch.distributed.run --nproc_per_node=2 --standalone" in done.stdout
    summary = json.loads((tmp_path / "metrics" / "pretrain" / "image" / "metrics.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    # The real model reports its health: relative loss, ranks within [1, D = 128], the realised mask.
    assert summary["first_rel_loss"] > 0 and summary["final_rel_loss"] > 0
    assert 1 <= summary["final_target_rank"] <= 128 and 1 <= summary["final_pred_rank"] <= 128
    assert 0.5 < summary["mean_masked_fraction"] < 1  # data2vec 2.0 images: inverse block, 80 %
    assert (tmp_path / "models" / "image" / "checkpoint.pt").is_file()
