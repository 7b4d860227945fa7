"""One retry layer: botocore's, counted at a tiny S3 stand-in on 127.0.0.1 that answers 503."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from d2v.artifacts.config import ArtifactsConfig, RetryConfig
from d2v.artifacts.errors import ArtifactError, TransientStoreError
from d2v.artifacts.retry import botocore_retries
from d2v.artifacts.s3 import S3Backend
from d2v.config import ConfigError, from_mapping


class FlakyS3:
    """Answers the first `failures` requests with `status`, later ones with an empty 200 object."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures, self.status, self.requests = failures, status, 0
        self.lock = threading.Lock()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
            failing = self.requests <= self.failures
        length = int(handler.headers.get("Content-Length") or 0)
        handler.rfile.read(length)  # a PUT's body; unread it would break the next request
        if failing:
            code = "ServiceUnavailable" if self.status == 503 else "AccessDenied"
            body = f"<Error><Code>{code}</Code><Message>flaky</Message></Error>".encode()
            handler.send_response(self.status)
        else:
            body = b""
            handler.send_response(200)
            handler.send_header("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def flaky_endpoint() -> Iterator[tuple[str, list[FlakyS3]]]:
    """(endpoint URL, [the FlakyS3 to answer with]): set the list's only item in the test."""
    script: list[FlakyS3] = [FlakyS3(0)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 speaks it

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            script[0].answer(self)

        do_PUT = do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def _backend(endpoint: str, retry: RetryConfig) -> S3Backend:
    return S3Backend(ArtifactsConfig(uri="s3://bucket/p", endpoint_url=endpoint, retry=retry,
                                     connect_timeout_s=2.0, read_timeout_s=5.0))


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
def test_botocore_makes_exactly_the_configured_attempts_then_the_store_names_op_and_key(
    flaky_endpoint: tuple[str, list[FlakyS3]], aws_env: None, no_botocore_backoff: None, mode: str
) -> None:
    endpoint, script = flaky_endpoint
    script[0] = FlakyS3(failures=100)
    backend = _backend(endpoint, RetryConfig(mode=mode, attempts=4))  # type: ignore[arg-type]
    with pytest.raises(TransientStoreError, match=r"s3://bucket/p: get runs/a/x\.bin: failed after 4 attempts"):
        backend.get_bytes("runs/a/x.bin")
    assert script[0].requests == 4  # one layer: 4 attempts, not 4 x botocore's


def test_a_short_run_of_503s_is_ridden_out(
    flaky_endpoint: tuple[str, list[FlakyS3]], aws_env: None, no_botocore_backoff: None
) -> None:
    endpoint, script = flaky_endpoint
    script[0] = FlakyS3(failures=2)
    _backend(endpoint, RetryConfig(attempts=3)).put_bytes("runs/a/x.bin", b"payload")
    assert script[0].requests == 3


def test_one_attempt_means_no_retry_and_permanent_errors_are_not_retried(
    flaky_endpoint: tuple[str, list[FlakyS3]], aws_env: None, no_botocore_backoff: None
) -> None:
    endpoint, script = flaky_endpoint
    script[0] = FlakyS3(failures=1)
    with pytest.raises(TransientStoreError, match="failed after 1 attempt "):
        _backend(endpoint, RetryConfig(attempts=1)).get_bytes("k")
    assert script[0].requests == 1
    script[0] = FlakyS3(failures=100, status=403)
    with pytest.raises(ArtifactError, match="get k: access denied") as info:
        _backend(endpoint, RetryConfig(attempts=5)).get_bytes("k")
    assert not isinstance(info.value, TransientStoreError) and script[0].requests == 1


def test_the_config_maps_onto_botocore_and_old_keys_are_rejected(tmp_path: Path) -> None:
    assert botocore_retries(RetryConfig()) == {"mode": "standard", "total_max_attempts": 4}
    assert botocore_retries(RetryConfig("adaptive", 2)) == {"mode": "adaptive", "total_max_attempts": 2}
    with pytest.raises(ArtifactError, match=r"artifacts.retry.attempts: 0: expected >= 1"):
        botocore_retries(RetryConfig(attempts=0))
    # params.yaml written for the old two-layer retry fails on load, naming the key and the new ones
    with pytest.raises(ConfigError, match=r"retry.sdk_attempts: unknown key \(expected one of: mode, attempts\)"):
        from_mapping(ArtifactsConfig, {"retry": {"attempts": 4, "sdk_attempts": 3}})
    with pytest.raises(ConfigError, match=r"retry.mode: expected one of \['standard', 'adaptive'\]"):
        from_mapping(ArtifactsConfig, {"retry": {"mode": "legacy"}})
