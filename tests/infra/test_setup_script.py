"""infra/setup.sh (`make setup`): a failed `pip install` is tried again, and the venv is only
stamped as ready once an attempt succeeds.

The script runs for real, in a copy of the repository's files that matter to it, with a stand-in
interpreter: a shell script that answers `--version`, creates the "venv" and plays pip, failing the
project install a chosen number of times (as a cut-off PyPI download does)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python3.11 and for the venv's python. FAKE_FAILS: how many project installs fail.
case "$1" in
    --version) echo "Python 3.11.7" ;;
    -m)
        case "$2" in
            venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
            pip)
                if [[ " $* " == *" --editable "* ]]; then
                    count=$(( $(cat "$FAKE_STATE/installs" 2>/dev/null || echo 0) + 1 ))
                    echo "$count" > "$FAKE_STATE/installs"
                    if (( count <= FAKE_FAILS )); then
                        echo "error: incomplete-download" >&2
                        exit 1
                    fi
                fi ;;
        esac ;;
esac
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files setup.sh reads, with no Debian package to install."""
    root = tmp_path / "repo"
    (root / "infra").mkdir(parents=True)
    shutil.copy2(REPO / "infra" / "setup.sh", root / "infra" / "setup.sh")
    (root / "infra" / "apt-packages.txt").write_text("# none: the apt step has nothing to do\n")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy2(REPO / "constraints.txt", root / "constraints.txt")
    fake = tmp_path / "python3.11"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def run_setup(root: Path, fails: int) -> tuple[subprocess.CompletedProcess[str], int]:
    """setup.sh's exit, output, and how many project installs were tried."""
    state = root.parent
    env = {
        **os.environ,
        "PYTHON": str(root.parent / "python3.11"),
        "FAKE_FAILS": str(fails),
        "FAKE_STATE": str(state),
        "D2V_PIP_RETRY_DELAY_S": "0",
    }
    env.pop("VENV", None)
    result = subprocess.run(
        ["bash", str(root / "infra" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    installs_file = state / "installs"
    return result, int(installs_file.read_text()) if installs_file.exists() else 0


def stamps(root: Path) -> list[Path]:
    return sorted((root / ".venv").glob(".d2v-setup-*"))


def test_two_cut_off_installs_are_retried_and_the_third_attempt_finishes(checkout: Path) -> None:
    result, installs = run_setup(checkout, fails=2)
    assert result.returncode == 0, result.stderr
    assert installs == 3
    assert "attempt 1 of 3" in result.stdout and "attempt 2 of 3" in result.stdout
    assert "environment ready" in result.stdout
    assert len(stamps(checkout)) == 1


def test_three_failed_installs_stop_setup_without_marking_the_venv_ready(checkout: Path) -> None:
    result, installs = run_setup(checkout, fails=99)
    assert result.returncode == 1
    assert installs == 3
    assert "pip install failed 3 times" in result.stderr
    assert stamps(checkout) == []
    # The next run tries again from the start instead of trusting a half-installed venv.
    result, installs = run_setup(checkout, fails=0)
    assert result.returncode == 0, result.stderr
    assert installs == 4 and len(stamps(checkout)) == 1


def test_a_ready_venv_is_not_installed_again(checkout: Path) -> None:
    assert run_setup(checkout, fails=0)[0].returncode == 0
    result, installs = run_setup(checkout, fails=0)
    assert result.returncode == 0
    assert installs == 1  # the stamp matched: no pip run the second time
    assert "creating .venv" not in result.stdout
