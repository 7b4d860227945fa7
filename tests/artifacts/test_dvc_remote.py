"""A DVC remote on S3 (moto over HTTP): push a tiny pipeline's outputs, lose them, pull them back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DVC = str(Path(sys.executable).with_name("dvc"))

DVC_YAML = """\
stages:
  prepare:
    cmd: python -c "import pathlib; p = pathlib.Path('out'); p.mkdir(exist_ok=True);
      (p / 'tokens.txt').write_text('the quick brown fox\\n' * 100)"
    outs:
      - out
"""


def sh(cwd: Path, env: dict[str, str], *cmd: str) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_dvc_push_and_pull_through_an_s3_remote_on_moto(
    moto_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp_path / "site-cache"),
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    sh(repo, env, "git", "init", "-q")
    sh(repo, env, DVC, "init", "-q")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    sh(repo, env, DVC, "repro", "-q")
    expected = (repo / "out" / "tokens.txt").read_bytes()

    # The documented setup: remote and endpoint in .dvc/config; credentials only in the
    # git-ignored .dvc/config.local (the environment holds no AWS_* variables at all).
    sh(repo, env, DVC, "remote", "add", "-d", "store", f"s3://{s3_bucket}/dvc")
    sh(repo, env, DVC, "remote", "modify", "store", "endpointurl", moto_server)
    sh(repo, env, DVC, "remote", "modify", "--local", "store", "access_key_id", "testing")
    sh(repo, env, DVC, "remote", "modify", "--local", "store", "secret_access_key", "testing")
    sh(repo, env, DVC, "remote", "modify", "store", "region", "us-east-1")
    assert "testing" not in (repo / ".dvc" / "config").read_text()
    sh(repo, env, DVC, "push", "-q")

    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "out")
    sh(repo, env, DVC, "pull", "-q")
    assert (repo / "out" / "tokens.txt").read_bytes() == expected
