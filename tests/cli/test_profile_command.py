"""`d2v profile list|show|apply` through the real command line entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from d2v.cli import main
from d2v.config import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    return tmp_path


def test_list_show_apply(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = str(checkout / "params.yaml")
    assert main(["profile", "list", "--params", params]) == 0
    listing = capsys.readouterr().out
    assert "image-base" in listing and "speech-large" in listing
    assert main(["profile", "show", "text-base", "--params", params, "--json", "--gpus", "8"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["gpus"] == 8
    assert {"key": "pretrain.text.grad_accum", "old": 1, "new": 2} in shown["changes"]
    assert (checkout / "params.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes(), "show writes nothing"
    assert main(["profile", "apply", "text-base", "--params", params, "--gpus", "8"]) == 0
    assert "next: dvc exp run -n text-base" in capsys.readouterr().out
    assert load_params(params).pretrain.text.grad_accum == 2


def test_user_errors_are_one_line_and_exit_2(checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = str(checkout / "params.yaml")
    assert main(["profile", "show", "--params", params]) == 2
    assert "name a profile" in capsys.readouterr().err
    assert main(["profile", "apply", "nope", "--params", params]) == 2
    assert "profile 'nope': no" in capsys.readouterr().err
