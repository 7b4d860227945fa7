"""Every store test runs on both backends: file:// on tmp_path and s3:// on a moto server (HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from d2v.artifacts.config import ArtifactsConfig, RetryConfig
from d2v.artifacts.store import ArtifactStore

FAST_RETRY = RetryConfig(attempts=3)


@pytest.fixture(params=["file", "s3"])
def artifacts_config(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactsConfig:
    if request.param == "file":
        return ArtifactsConfig(uri=f"file://{tmp_path / 'store'}", retry=FAST_RETRY)
    return request.getfixturevalue("fast_retry_artifacts_config")


@pytest.fixture
def store(artifacts_config: ArtifactsConfig) -> ArtifactStore:
    return ArtifactStore.from_config(artifacts_config)


def write_files(root: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Create `files` (relative path -> content) under `root`; relative path -> local path."""
    out = {}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[rel] = path
    return out


@pytest.fixture
def make_files() -> Callable[[Path, dict[str, bytes]], dict[str, Path]]:
    return write_files
