"""The artifact store under injected faults (fault_scenarios_store), and the fault proxy itself.

Every scenario must survive: no partial run visible to readers, nothing already published changed,
the re-run (or the command itself) completed, and the result equal to an undisturbed run. Each
guarantee is its own assertion, so a failure names the one that broke; `LAST[name]` adds what the
scenario saw (faults injected, the error raised). The proxy tests come first: a scenario must not
pass because the proxy silently injected nothing.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from fault_scenarios_store import BIG, KNOWN_FAILING, KNOWN_FAILING_REASONS, LAST, SCENARIOS
from s3_fault_proxy import FaultProxy, Rule, _read_body, s3_operation

# ----------------------------------------------------------------------------- the proxy


def _client(endpoint: str) -> Any:
    """A boto3 S3 client that tries each request once: every injected fault shows as it is."""
    return boto3.client("s3", endpoint_url=endpoint, config=botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5,
        s3={"addressing_style": "path"}))


@pytest.fixture
def bucket(moto_server: str) -> str:
    _client(moto_server).create_bucket(Bucket="proxy-test")
    return "proxy-test"


class Capture(BaseHTTPRequestHandler):
    """An upstream that records each request exactly as it arrived, and answers 200 'ok'."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []

    def do_PUT(self) -> None:  # noqa: N802
        self.seen.append((self.command, self.path, list(self.headers.items()), _read_body(self)))
        self.send_response_only(200)
        self.send_header("X-Upstream", "capture")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def capture() -> Iterator[str]:
    Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_are_forwarded_byte_for_byte(capture: str, proxy_to: Callable[[str], FaultProxy]) -> None:
    proxy = proxy_to(capture)
    port = int(proxy.url.rsplit(":", 1)[1])
    headers = [("Host", "s3.example.test:9000"),  # SigV4 signs Host: it must not become the proxy's
               ("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
                                 "SignedHeaders=host;x-amz-date, Signature=abc123"),
               ("x-amz-date", "20260101T000000Z"), ("X-Amz-Meta-Odd-CASE", "v a  l")]
    for body, extra in ((b"\x00\x01 payload \xff" * 50, [("Content-Length", "600")]),
                        (b"5\r\nhello\r\n3;ext=1\r\n!!!\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n",
                         [("Transfer-Encoding", "chunked")])):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.putrequest("PUT", "/bkt/runs/r%201/a+b.bin?partNumber=2&uploadId=x%2Fy", skip_host=True,
                        skip_accept_encoding=True)
        for name, value in headers + extra:
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        assert (response.status, response.read(), response.getheader("X-Upstream")) == (200, b"ok", "capture")
        conn.close()
        method, path, got, received = Capture.seen[-1]
        assert (method, path) == ("PUT", "/bkt/runs/r%201/a+b.bin?partNumber=2&uploadId=x%2Fy")
        assert got == headers + extra  # order, case, Host and signature kept
        assert received == body  # a chunked body arrives chunk for chunk, trailer included
    assert proxy.requests == 2 and proxy.injected == 0
    assert proxy.log[0].op == "UploadPart" and proxy.log[0].path == "/bkt/runs/r 1/a+b.bin"


def test_operations_are_named_as_s3_does() -> None:
    assert s3_operation("PUT", "/b/k", "partNumber=1&uploadId=u") == "UploadPart"
    assert s3_operation("PUT", "/b/k", "") == "PutObject"
    assert s3_operation("PUT", "/b", "versioning") == "PutBucketVersioning"
    assert s3_operation("POST", "/b/k", "uploads") == "CreateMultipartUpload"
    assert s3_operation("POST", "/b/k", "uploadId=u") == "CompleteMultipartUpload"
    assert s3_operation("GET", "/b", "list-type=2&prefix=runs%2F") == "ListObjectsV2"
    assert s3_operation("GET", "/b/k", "") == "GetObject" and s3_operation("HEAD", "/b/k", "") == "HeadObject"
    assert s3_operation("DELETE", "/b/k", "uploadId=u") == "AbortMultipartUpload"


def test_error_rules_answer_like_s3_and_only_the_chosen_requests(fault_proxy: FaultProxy, bucket: str) -> None:
    url = f"{fault_proxy.url}/{bucket}?list-type=2"
    fault_proxy.add(Rule(503, op="ListObjectsV2", nth={2}))
    fault_proxy.add(Rule(500, op="ListObjectsV2", nth={3}, times=1))
    answers = []
    for _ in range(4):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answers.append((response.status, b"<ListBucketResult" in response.read()))
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, exc.read().decode()))
    assert answers[0] == (200, True) and answers[3] == (200, True)
    assert answers[1][0] == 503 and "<Code>SlowDown</Code>" in answers[1][1] and "<Error>" in answers[1][1]
    assert answers[2][0] == 500 and "<Code>InternalError</Code>" in answers[2][1]
    assert fault_proxy.injected == 2 and fault_proxy.injected_by_kind() == {"503": 1, "500": 1}
    fault_proxy.clear()
    fault_proxy.add(Rule(503, op="PutObject"))
    with pytest.raises(botocore.exceptions.ClientError) as info:  # boto3 reads it as S3's own error
        _client(fault_proxy.url).put_object(Bucket=bucket, Key="k", Body=b"x")
    assert info.value.response["Error"]["Code"] == "SlowDown"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_reset_never_reaches_s3_and_a_dropped_response_does(fault_proxy: FaultProxy, bucket: str, moto_server: str) -> None:
    via_proxy, direct = _client(fault_proxy.url), _client(moto_server)
    fault_proxy.add(Rule("reset", op="PutObject", key="/reset", nth={1}))
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
        via_proxy.put_object(Bucket=bucket, Key="reset", Body=b"x")
    assert "Contents" not in direct.list_objects_v2(Bucket=bucket, Prefix="reset")  # never arrived
    via_proxy.put_object(Bucket=bucket, Key="reset", Body=b"x")  # nth={1}: the next one passes
    fault_proxy.add(Rule("drop_response", op="PutObject", key="/dropped"))
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        via_proxy.put_object(Bucket=bucket, Key="dropped", Body=b"landed")
    assert direct.get_object(Bucket=bucket, Key="dropped")["Body"].read() == b"landed"  # S3 applied it
    assert fault_proxy.injected_by_kind() == {"reset": 1, "drop_response": 1}


def test_a_cut_response_stops_half_way(fault_proxy: FaultProxy, bucket: str, moto_server: str) -> None:
    _client(moto_server).put_object(Bucket=bucket, Key="blob", Body=b"z" * 10_000)
    fault_proxy.add(Rule("cut", op="GetObject", key="/blob", times=1))
    port = int(fault_proxy.url.rsplit(":", 1)[1])
    signed = _client(fault_proxy.url).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "blob"})
    for expect_cut in (True, False):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", signed.split(str(port), 1)[1])
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Length") == "10000"
        if expect_cut:
            with pytest.raises(http.client.IncompleteRead) as info:
                response.read()
            assert len(info.value.partial) == 5000
        else:
            assert response.read() == b"z" * 10_000
        conn.close()


def test_delay_and_gate_hold_requests(fault_proxy: FaultProxy, bucket: str) -> None:
    url = f"{fault_proxy.url}/{bucket}?list-type=2"
    fault_proxy.add(Rule("delay", op="ListObjectsV2", nth={1}, delay_s=0.4))
    took = []
    for _ in range(2):
        start = time.monotonic()
        urllib.request.urlopen(url, timeout=5).close()
        took.append(time.monotonic() - start)
    assert took[0] >= 0.4 and took[1] < 0.4
    fault_proxy.clear()
    fault_proxy.add(Rule("gate", op="ListObjectsV2", gate=2))
    done: list[float] = []
    first = threading.Thread(target=lambda: (urllib.request.urlopen(url, timeout=10).close(),
                                             done.append(time.monotonic())))
    first.start()
    time.sleep(0.4)
    assert not done  # held until a second request arrives
    released = time.monotonic()
    urllib.request.urlopen(url, timeout=10).close()
    first.join()
    assert done and done[0] >= released
    assert fault_proxy.injected_by_kind() == {"delay": 1, "gate": 2}


# ------------------------------------------------------------------------------ scenarios


def _expect_publish_rode_it_out(d: dict[str, Any]) -> None:
    assert d["first_try_completed"], f"publish failed on its own try: {d['error']}: {d['error_message']}"
    assert d["runs_added"] == ["faulty"]


def _expect_publish_gave_up_cleanly(d: dict[str, Any]) -> None:
    assert d["error"] == "TransientStoreError", d["error_message"]
    assert "upload runs/faulty/" in d["error_message"] and "failed after 5 attempts" in d["error_message"]
    assert not d["listed"], "list_runs shows the half-published run"
    assert not d["manifest_readable"], "manifest('faulty') answered for a half-published run"
    assert d["latest_after_fault"] == "base", "latest moved although the publish failed"
    assert d["id_reuse"] == "refused", "the id of a partial publish was accepted again"
    assert d["runs_added"] == ["faulty-rerun"]


def _expect_download_retried(d: dict[str, Any]) -> None:
    assert d["first_try_completed"], d["error_message"]
    assert d["partial_files"] == []


def _expect_download_failed_cleanly(d: dict[str, Any]) -> None:
    assert d["error"] == "TransientStoreError" and f"download runs/base/{BIG}" in d["error_message"]
    assert BIG not in d["present_after_fault"], "a partial download was left under the final name"
    assert d["partial_files"] == []


def _expect_corruption_refused(d: dict[str, Any]) -> None:
    assert d["error"] == "ChecksumMismatchError" and d["names_file"], d["error_message"]
    assert d["local_copy_kept"], "the good local copy was replaced by a corrupt download"
    assert d["leftovers"] == [] and d["changed_by_download"] == []


def _expect_one_winner(d: dict[str, Any]) -> None:
    assert d["one_winner"], (d["winners"], d["errors"])
    winner, (loser, error) = d["winners"][0], next(iter(d["errors"].items()))
    assert error.startswith("PointerConflictError") and winner in error and loser != winner
    assert d["champion_after_race"] == winner and d["changed_by_race"] == []
    assert d["champion_history"] == ["base", winner, loser]


EXPECT: dict[str, Callable[[dict[str, Any]], None]] = {
    "connection-reset-mid-publish": _expect_publish_rode_it_out,
    "http-500-503-mid-publish": _expect_publish_rode_it_out,
    "throttled-mid-publish": _expect_publish_rode_it_out,
    "response-past-read-timeout": _expect_publish_rode_it_out,
    "lost-response-to-upload": _expect_publish_rode_it_out,
    "503-beyond-retry-budget": _expect_publish_gave_up_cleanly,
    "download-cut-once": _expect_download_retried,
    "download-cut-always": _expect_download_failed_cleanly,
    "corrupted-object-s3": _expect_corruption_refused,
    "corrupted-object-file": _expect_corruption_refused,
    "champion-race": _expect_one_winner,
    "lost-response-to-manifest": _expect_publish_rode_it_out,
    "lost-response-to-champion-write": _expect_one_winner,
}


def _check(name: str, scenario: Callable[[Path], Any], tmp_path: Path) -> None:
    outcome = scenario(tmp_path)
    details = LAST[name]
    assert details["injected"] > 0, f"{name}: no fault was injected, so the scenario proved nothing"
    assert not outcome.partial_visible, f"{name}: a partial result was visible: {details}"
    assert not outcome.published_changed, f"{name}: something already published changed: {details}"
    assert outcome.rerun_completed, f"{name}: the re-run did not complete: {details}"
    assert outcome.equals_undisturbed, f"{name}: the result differs from an undisturbed run: {details}"
    assert outcome.data_lost == "none", f"{name}: data lost: {outcome.data_lost}"
    EXPECT[name](details)
    assert outcome.survived and outcome.seconds < 30


def test_every_scenario_has_its_specific_checks() -> None:
    assert set(EXPECT) == set(SCENARIOS) | set(KNOWN_FAILING)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_store_survives(name: str, tmp_path: Path) -> None:
    _check(name, SCENARIOS[name], tmp_path)


