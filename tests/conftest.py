"""Fixtures shared by the whole suite.

S3 in tests is moto in server mode: a real HTTP endpoint on 127.0.0.1 that boto3, DVC remotes and
Prefect result storage talk to exactly as they would to AWS. One server on a free port serves the whole
session; each test gets dummy AWS credentials in the environment and a clean moto state (moto keeps
buckets in process memory, so state would otherwise leak from one test into the next).

    def test_x(moto_server: str, s3_bucket: str): ...   # endpoint URL, bucket name
    def test_y(moto_server_control: MotoServerControl): ...  # .stop() / .start() mid-test
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from d2v.artifacts.config import ArtifactsConfig

from moto_support import TEST_BUCKET, MotoServerControl, free_port  # noqa: E402


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials; no user AWS config, profile or endpoint can leak into a test."""
    empty = tmp_path_factory.mktemp("aws")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def _moto_server_for_session() -> Iterator[MotoServerControl]:
    # One server per session (a stop costs 0.5 s of werkzeug's poll interval); tests get it reset.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    control = MotoServerControl(free_port())
    control.start()
    yield control
    control.stop()


@pytest.fixture
def moto_server_control(
    aws_env: None, _moto_server_for_session: MotoServerControl
) -> Iterator[MotoServerControl]:
    """The moto server, empty, for one test; restarted afterwards if the test stopped it."""
    control = _moto_server_for_session
    if control._server is None:  # noqa: SLF001 - an earlier test left it stopped
        control.start()
    control.reset()
    yield control
    if control._server is None:  # noqa: SLF001
        control.start()


@pytest.fixture
def moto_server(moto_server_control: MotoServerControl) -> str:
    """Endpoint URL of a moto S3 server on 127.0.0.1 (AWS_* dummy credentials are set)."""
    return moto_server_control.url


@pytest.fixture
def s3_bucket(moto_server: str) -> str:
    """An empty bucket on the moto server; its name."""
    from d2v.artifacts.s3 import ensure_bucket

    ensure_bucket(ArtifactsConfig(uri=f"s3://{TEST_BUCKET}", endpoint_url=moto_server))
    return TEST_BUCKET


@pytest.fixture
def no_botocore_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries without sleeping (its jittered backoff waits up to 1 s, 2 s, ... otherwise)."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def fast_retry_artifacts_config(moto_server: str, s3_bucket: str, no_botocore_backoff: None) -> ArtifactsConfig:
    """An s3:// artifacts config on the moto server: 3 attempts per request, no backoff sleeps."""
    from d2v.artifacts.config import RetryConfig

    return ArtifactsConfig(
        uri=f"s3://{s3_bucket}/d2v",
        endpoint_url=moto_server,
        connect_timeout_s=2.0,
        read_timeout_s=10.0,
        retry=RetryConfig(attempts=3),
    )

