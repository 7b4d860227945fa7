"""Collect a run's provenance: git commit and dirty flag, dvc.lock hash, versions, host."""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from d2v.artifacts.manifest import Provenance

# Distributions whose versions identify the software that produced a run. Read from package
# metadata, never imported: importing torch costs seconds.
TRACKED_PACKAGES = ("torch", "d2v", "dvc", "prefect")


def collect_provenance(params: Mapping[str, Any], root: Path | None = None) -> Provenance:
    """Provenance of work done in `root` (default: the working directory) with `params`."""
    root = Path.cwd() if root is None else root
    commit, dirty = git_state(root)
    lock = root / "dvc.lock"
    return Provenance(
        git_commit=commit,
        git_dirty=dirty,
        dvc_lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
        params=dict(params),
        versions=package_versions(),
        hostname=socket.gethostname(),
        platform=platform.platform(),
    )


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside a git repo."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Python and the installed version of each tracked package (+ `extra`); None when absent."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES + extra:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


__all__ = ["TRACKED_PACKAGES", "collect_provenance", "git_state", "package_versions"]
