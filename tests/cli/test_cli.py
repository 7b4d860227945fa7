from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import d2v
from d2v.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "params" in out and "--debug" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"d2v {d2v.__version__}"


def test_params_check_accepts_repository_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "check", "--params", str(REPO / "params.yaml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_params_exit_nonzero_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    tree = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    tree["model"]["image"]["dpeth"] = 12
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(tree), encoding="utf-8")
    # The installed console script, as a user runs it.
    result = subprocess.run(
        [Path(sys.executable).parent / "d2v", "params", "check", "--params", str(bad)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "model.image.dpeth: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_flag_shows_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "d2v.cli", "--debug", "params", "check", "--params", str(tmp_path / "x.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "params file not found" in result.stderr


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: d2v" in capsys.readouterr().out


def test_bad_evaluate_seeds_fail_before_any_model_loads(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The checkpoint does not exist either: the --seeds error must come first, as one line.
    code = main(["evaluate", "text", "--params", str(REPO / "params.yaml"), "--models-dir", str(tmp_path),
                 "--seeds", "0,zero"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() == "d2v evaluate: error: --seeds: expected comma-separated integers such as 0,1,2, got '0,zero'"
