"""S3-only behaviour against moto over HTTP: multipart, outages mid-publish, clear errors."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions
import pytest

from d2v.artifacts.interface import BytesCallback
from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import ArtifactError, TransientStoreError
from d2v.artifacts.s3 import BUCKET_HARDENING, S3Backend, bucket_protection, ensure_bucket, harden_bucket, parse_s3_uri
from d2v.artifacts.store import ArtifactStore, run_key

MIB = 1024 * 1024
BOTOCORE_RETRY_LOG = "botocore.retries.standard"  # logs each retry it schedules, at DEBUG


class StopServerAfterFirstUpload:
    """A progress listener that takes S3 away once the first file of a publish is stored."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self.uploaded: list[str] = []

    def file_started(self, action: str, path: str, size: int) -> BytesCallback | None:
        return None

    def file_done(self, action: str, path: str, size: int) -> None:
        self.uploaded.append(path)
        if len(self.uploaded) == 1:
            self.stop()


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(ArtifactError, match="names no bucket"):
        parse_s3_uri("s3:///prefix")


def test_large_files_go_up_in_parts_and_come_back_verified(
    fast_retry_artifacts_config: ArtifactsConfig, tmp_path: Path
) -> None:
    cfg = dataclasses.replace(fast_retry_artifacts_config, multipart_threshold_mb=5,
                              multipart_chunk_mb=5)
    store = ArtifactStore.from_config(cfg)
    big = tmp_path / "ckpt.pt"
    big.write_bytes(bytes(range(256)) * (11 * MIB // 256))  # 11 MiB -> parts of 5 + 5 + 1
    seen: list[int] = []

    class CountBytes:
        def file_started(self, action: str, path: str, size: int) -> BytesCallback:
            return seen.append

        def file_done(self, action: str, path: str, size: int) -> None:
            return None

    store.publish({"ckpt.pt": big}, run_id="big", progress=CountBytes())
    assert sum(seen) == 11 * MIB  # progress saw every byte
    backend = store.backend
    assert isinstance(backend, S3Backend)
    head = backend.client.head_object(Bucket=backend.bucket, Key=backend._key(run_key("big", "ckpt.pt")))
    assert head["ETag"].strip('"').endswith("-3")  # S3's multipart ETag: md5-of-parts "-" n_parts
    (out,) = store.download("big", tmp_path / "out")
    assert out.read_bytes() == big.read_bytes()


def test_s3_going_away_mid_publish_fails_after_bounded_retries_and_leaves_no_visible_run(
    fast_retry_artifacts_config: ArtifactsConfig,
    moto_server_control,  # noqa: ANN001 - tests/conftest.py MotoServerControl
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ArtifactStore.from_config(fast_retry_artifacts_config)
    files = {f"part-{i}.bin": tmp_path / f"part-{i}.bin" for i in range(3)}
    for path in files.values():
        path.write_bytes(b"x" * 1000)
    listener = StopServerAfterFirstUpload(moto_server_control.stop)
    with caplog.at_level(logging.DEBUG, logger=BOTOCORE_RETRY_LOG):
        with pytest.raises(TransientStoreError, match="upload runs/outage/part-1.bin: failed after up to 3 attempts"):
            store.publish(files, run_id="outage", progress=listener)
    assert listener.uploaded == ["part-0.bin"]
    # botocore is the only layer that retries: attempts - 1 retries of the one failing request
    retries = [r for r in caplog.records if r.getMessage().startswith("Retry needed, retrying")]
    assert len(retries) == fast_retry_artifacts_config.retry.attempts - 1

    moto_server_control.start()  # moto's state lives in this process: the bucket is back as it was
    leftovers = [info.key for info in store.backend.list("runs/outage/")]
    assert leftovers == ["runs/outage/part-0.bin"]  # the partial upload really happened...
    assert store.list_runs() == []  # ...but without a manifest nobody sees the run
    store.publish(files, run_id="after-outage")
    assert [r.run_id for r in store.list_runs()] == ["after-outage"]


def test_a_short_outage_is_ridden_out_by_the_retries(
    fast_retry_artifacts_config: ArtifactsConfig,
    moto_server_control,  # noqa: ANN001 - tests/conftest.py MotoServerControl
    tmp_path: Path,
) -> None:
    store = ArtifactStore.from_config(fast_retry_artifacts_config)
    files = {f"f{i}": tmp_path / f"f{i}" for i in range(2)}
    for path in files.values():
        path.write_bytes(b"payload")

    restarts: list[str] = []

    class RestartOnFirstRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if moto_server_control._server is None:  # noqa: SLF001
                restarts.append(record.getMessage())
                moto_server_control.start()

    handler = RestartOnFirstRetry(level=logging.DEBUG)
    retry_log = logging.getLogger(BOTOCORE_RETRY_LOG)
    level = retry_log.level
    retry_log.setLevel(logging.DEBUG)  # botocore announces each retry at DEBUG
    retry_log.addHandler(handler)
    try:
        manifest = store.publish(files, run_id="bumpy",
                                 progress=StopServerAfterFirstUpload(moto_server_control.stop))
    finally:
        retry_log.removeHandler(handler)
        retry_log.setLevel(level)
    assert len(restarts) == 1 and restarts[0].startswith("Retry needed")
    assert [r.run_id for r in store.list_runs()] == ["bumpy"]
    assert store.manifest("bumpy") == manifest


def test_missing_bucket_and_missing_credentials_give_clear_errors(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a").write_bytes(b"a")
    store = ArtifactStore.from_config(ArtifactsConfig(uri="s3://no-such-bucket/x",
                                                      endpoint_url=moto_server))
    with pytest.raises(ArtifactError, match="bucket 'no-such-bucket' does not exist"):
        store.publish({"a": tmp_path / "a"})
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = ArtifactStore.from_config(ArtifactsConfig(uri="s3://no-such-bucket/x",
                                                      endpoint_url=moto_server))
    with pytest.raises(ArtifactError, match="no AWS credentials"):
        store.list_runs()


def test_ensure_bucket_is_idempotent(moto_server: str) -> None:
    cfg = ArtifactsConfig(uri="s3://fresh-bucket/p", endpoint_url=moto_server)
    assert ensure_bucket(cfg) is True
    assert ensure_bucket(cfg) is False
    assert ArtifactStore.from_config(cfg).list_runs() == []


def test_init_hardens_a_new_bucket_and_an_existing_plain_one(moto_server: str) -> None:
    fresh = ArtifactsConfig(uri="s3://hardened-bucket", endpoint_url=moto_server)
    assert ensure_bucket(fresh) is True
    assert bucket_protection(S3Backend(fresh)) == {name: True for name in BUCKET_HARDENING}
    plain = ArtifactsConfig(uri="s3://plain-bucket", endpoint_url=moto_server)
    ensure_bucket(plain, harden=False)
    assert bucket_protection(S3Backend(plain)) == {name: False for name in BUCKET_HARDENING}
    assert ensure_bucket(plain) is False  # exists: hardened in place
    assert all(bucket_protection(S3Backend(plain)).values())


def test_an_endpoint_that_cannot_harden_is_refused_with_the_reason(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = S3Backend(ArtifactsConfig(uri="s3://no-sse-bucket", endpoint_url=moto_server))
    backend.client.create_bucket(Bucket="no-sse-bucket")

    def refuse(**_: object) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "NotImplemented", "Message": "SSE-S3 is not configured"}}, "PutBucketEncryption")

    monkeypatch.setattr(backend.client, "put_bucket_encryption", refuse)
    with pytest.raises(ArtifactError, match=r"SSE-S3 is not configured.*default encryption could not be enabled.*--no-harden"):
        harden_bucket(backend)
    assert bucket_protection(backend)["versioning"] and not bucket_protection(backend)["public-access block"]


def test_init_adds_the_incomplete_upload_cleanup_and_keeps_the_buckets_own_rules(moto_server: str) -> None:
    cfg = ArtifactsConfig(uri="s3://ruled-bucket", endpoint_url=moto_server)
    ensure_bucket(cfg, harden=False)
    client = S3Backend(cfg).client
    own = {"ID": "tier-old-runs", "Status": "Enabled", "Filter": {"Prefix": "runs/"},
           "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}]}
    client.put_bucket_lifecycle_configuration(Bucket="ruled-bucket", LifecycleConfiguration={"Rules": [own]})
    ensure_bucket(cfg)
    ensure_bucket(cfg)  # idempotent: the rule is added once
    rules = client.get_bucket_lifecycle_configuration(Bucket="ruled-bucket")["Rules"]
    assert [r["ID"] for r in rules] == ["tier-old-runs", "d2v-abort-incomplete-uploads"]
    assert rules[1]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert bucket_protection(S3Backend(cfg))["incomplete-upload cleanup"]
