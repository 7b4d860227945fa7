from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from report_tree import DVC_LOCK, REPO_ROOT

from d2v.config import load_params
from d2v.errors import D2VError
from d2v.report.provenance import all_versions, detect_hardware, read_locked_outputs, seeds_of


def test_locked_outputs_in_file_order_without_the_report_stage(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(DVC_LOCK, encoding="utf-8")
    outputs = read_locked_outputs(lock, skip_stages=frozenset({"report"}))
    assert [(o.stage, o.path, o.nfiles) for o in outputs] == [
        ("prepare@image", "data/prepared/image", 8), ("pretrain@image", "models/image", 1)]
    assert outputs[1].md5 == "fedcba9876543210fedcba9876543210.dir" and outputs[1].size == 4321000
    assert len(read_locked_outputs(lock)) == 3
    assert read_locked_outputs(tmp_path / "missing.lock") == ()
    lock.write_text("stages: [unclosed", encoding="utf-8")
    with pytest.raises(D2VError, match=r"dvc\.lock: not valid YAML"):
        read_locked_outputs(lock)


def test_seeds_resolve_the_pretraining_seed() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    seeded = dataclasses.replace(params, seed=7, pretrain=dataclasses.replace(params.pretrain, seed=None))
    assert seeds_of(seeded)["pretrain.seed (resolved)"] == 7
    explicit = dataclasses.replace(seeded, pretrain=dataclasses.replace(params.pretrain, seed=11))
    assert seeds_of(explicit)["pretrain.seed (resolved)"] == 11 and seeds_of(explicit)["seed"] == 7


def test_hardware_and_versions_describe_this_machine() -> None:
    hardware = detect_hardware()
    assert hardware.logical_cores >= 1 and hardware.cpu_model
    versions = all_versions()
    assert versions["torch"] and versions["matplotlib"] and versions["python"].startswith("3.")
