"""The run identity: what makes `--resume` continue a checkpoint, and what makes it start over."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from d2v.train._selftest import FINGERPRINT, tiny_config
from d2v.train.run_identity import run_identity


def _prepared(root: Path) -> Path:
    root.mkdir()
    (root / "meta.json").write_text('{"num_classes": 10}\n')
    (root / "manifest.csv").write_text("id,split\na,train\n")
    (root / "train-0000.npy").write_bytes(b"\0" * 64)
    return root


def test_the_same_run_has_the_same_identity_and_reporting_knobs_do_not_count(tmp_path) -> None:
    data = _prepared(tmp_path / "data")
    cfg = tiny_config()
    first = run_identity(FINGERPRINT, cfg, 0, data)
    assert run_identity(FINGERPRINT, cfg, 0, data) == first
    assert run_identity(FINGERPRINT, dataclasses.replace(cfg, checkpoint_every=1, log_every=1), 0, data) == first


def test_recipe_seed_model_and_data_changes_each_start_a_new_run(tmp_path) -> None:
    data = _prepared(tmp_path / "data")
    cfg = tiny_config()
    first = run_identity(FINGERPRINT, cfg, 0, data)
    assert run_identity(FINGERPRINT, dataclasses.replace(cfg, lr=cfg.lr * 2), 0, data) != first
    assert run_identity(FINGERPRINT, dataclasses.replace(cfg, max_steps=cfg.max_steps + 1), 0, data) != first
    assert run_identity(FINGERPRINT, cfg, 1, data) != first
    assert run_identity(dataclasses.replace(FINGERPRINT, spec_hash="1" * 16), cfg, 0, data) != first
    (data / "manifest.csv").write_text("id,split\nb,train\n")  # same size, other content
    second = run_identity(FINGERPRINT, cfg, 0, data)
    assert second != first
    (data / "train-0000.npy").write_bytes(b"\0" * 65)  # a shard of another size
    assert run_identity(FINGERPRINT, cfg, 0, data) != second


def _checkpoint(folder: Path, seed: int) -> Path:
    """A real (tiny) checkpoint: one update of the engine's stand-in model."""
    import torch

    from d2v.train._selftest import StandInModel, SyntheticDataset
    from d2v.train.distributed import DistEnv
    from d2v.train.loop import RunPaths, pretrain

    torch.manual_seed(seed)
    paths = RunPaths(folder / "ckpt.pt", folder / "metrics")
    pretrain(StandInModel(), SyntheticDataset(16), tiny_config(max_steps=1), modality="image",
             fingerprint=FINGERPRINT, seed=seed, paths=paths, env=DistEnv(0, 1, 0, torch.device("cpu")))  # fmt: skip
    return paths.checkpoint


def test_a_warm_start_is_another_run_than_fresh_weights(tmp_path) -> None:
    data = _prepared(tmp_path / "data")
    fresh = run_identity(FINGERPRINT, tiny_config(), 0, data)
    warm = run_identity(FINGERPRINT, tiny_config(), 0, data, init=_checkpoint(tmp_path / "a", 0))
    assert warm != fresh
    assert run_identity(FINGERPRINT, tiny_config(), 0, data, init=_checkpoint(tmp_path / "b", 1)) != warm
