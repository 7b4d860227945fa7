"""infra/setup.sh (`make setup`): a failed install (pip or apt-get) is tried again, and the venv is
only stamped as ready once an attempt succeeds.

The script runs for real, in a copy of the repository's files that matter to it, with stand-ins for
the programs it calls: a shell script as the interpreter (answers `--version`, creates the "venv",
plays pip) and, for the apt step, `dpkg-query` and `apt-get` earlier on PATH. Each stand-in fails a
chosen number of times, as a cut-off download does."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Each stand-in counts its calls in $FAKE_STATE/<name> and fails the first $FAKE_FAILS of them.
COUNT_AND_MAYBE_FAIL = """
count_call() {
    local n=$(( $(cat "$FAKE_STATE/$1" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$FAKE_STATE/$1"
    if (( n <= FAKE_FAILS )); then echo "error: incomplete-download" >&2; exit 1; fi
}
"""

FAKE_PYTHON = "#!/usr/bin/env bash\n" + COUNT_AND_MAYBE_FAIL + """
case "$1" in
    --version) echo "Python 3.11.7" ;;
    -m)
        case "$2" in
            venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
            pip) if [[ " $* " == *" --editable "* ]]; then count_call pip; fi ;;
        esac ;;
esac
"""

# Reports every package as missing, so the apt step always has work.
FAKE_DPKG_QUERY = "#!/usr/bin/env bash\nexit 1\n"
FAKE_APT_GET = "#!/usr/bin/env bash\n" + COUNT_AND_MAYBE_FAIL + """
if [[ "$1" == "install" ]]; then count_call apt-get-install; fi
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files setup.sh reads, with no Debian package to install."""
    root = tmp_path / "repo"
    (root / "infra").mkdir(parents=True)
    shutil.copy2(REPO / "infra" / "setup.sh", root / "infra" / "setup.sh")
    (root / "infra" / "apt-packages.txt").write_text("# none: the apt step has nothing to do\n")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy2(REPO / "constraints.txt", root / "constraints.txt")
    _executable(tmp_path / "python3.11", FAKE_PYTHON)
    return root


def run_setup(root: Path, fails: int, **env_extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """setup.sh's exit and output, and how many times each stand-in was called."""
    state = root.parent
    env = {
        **os.environ,
        "PYTHON": str(state / "python3.11"),
        "FAKE_FAILS": str(fails),
        "FAKE_STATE": str(state),
        "D2V_SETUP_RETRY_DELAY_S": "0",
        **env_extra,
    }
    env.pop("VENV", None)
    result = subprocess.run(
        ["bash", str(root / "infra" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    calls = {name: int((state / name).read_text()) for name in ("pip", "apt-get-install") if (state / name).exists()}
    return result, calls


def stamps(root: Path) -> list[Path]:
    return sorted((root / ".venv").glob(".d2v-setup-*"))


def test_two_cut_off_installs_are_retried_and_the_third_attempt_finishes(checkout: Path) -> None:
    result, calls = run_setup(checkout, fails=2)
    assert result.returncode == 0, result.stderr
    assert calls == {"pip": 3}
    assert "pip install failed (attempt 1 of 3)" in result.stdout
    assert "pip install failed (attempt 2 of 3)" in result.stdout
    assert "environment ready" in result.stdout
    assert len(stamps(checkout)) == 1


def test_three_failed_installs_stop_setup_without_marking_the_venv_ready(checkout: Path) -> None:
    result, calls = run_setup(checkout, fails=99)
    assert result.returncode == 1
    assert calls == {"pip": 3}
    assert "pip install failed 3 times" in result.stderr
    assert stamps(checkout) == []
    # The next run installs again instead of trusting a half-installed venv.
    result, calls = run_setup(checkout, fails=0)
    assert result.returncode == 0, result.stderr
    assert calls == {"pip": 4} and len(stamps(checkout)) == 1


def test_a_ready_venv_is_not_installed_again(checkout: Path) -> None:
    assert run_setup(checkout, fails=0)[0].returncode == 0
    result, calls = run_setup(checkout, fails=0)
    assert result.returncode == 0
    assert calls == {"pip": 1}  # the stamp matched: no pip run the second time
    assert "creating .venv" not in result.stdout


def test_the_number_of_attempts_is_a_setting(checkout: Path) -> None:
    result, calls = run_setup(checkout, fails=99, D2V_SETUP_ATTEMPTS="5")
    assert result.returncode == 1 and calls == {"pip": 5}
    assert "pip install failed 5 times" in result.stderr


@pytest.mark.parametrize("attempts, delay", [("0", "0"), ("three", "0"), ("3", "-1")])
def test_bad_retry_settings_are_refused_before_anything_runs(checkout: Path, attempts: str, delay: str) -> None:
    result, calls = run_setup(checkout, fails=0, D2V_SETUP_ATTEMPTS=attempts, D2V_SETUP_RETRY_DELAY_S=delay)
    assert result.returncode == 1
    assert "D2V_SETUP_ATTEMPTS must be a whole number >= 1" in result.stderr
    assert f"got '{attempts}' and '{delay}'" in result.stderr
    assert calls == {}


@pytest.mark.skipif(os.geteuid() != 0, reason="setup.sh runs apt-get itself only as root (else it prints the command)")
def test_a_failed_apt_get_install_is_retried(checkout: Path) -> None:
    (checkout / "infra" / "apt-packages.txt").write_text("some-data-package\n")
    bin_dir = checkout.parent / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "dpkg-query", FAKE_DPKG_QUERY)
    _executable(bin_dir / "apt-get", FAKE_APT_GET)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result, calls = run_setup(checkout, fails=1, PATH=path)
    assert result.returncode == 0, result.stderr
    # Each stand-in fails its first call: apt-get was retried once, and so was pip.
    assert calls == {"apt-get-install": 2, "pip": 2}
    assert "apt-get install failed (attempt 1 of 3)" in result.stdout
