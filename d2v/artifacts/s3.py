"""`s3://bucket/prefix` backend on boto3 (AWS S3, MinIO, moto). The only module that imports boto3.

Reliability: botocore's own retry handler (`artifacts.retry`: mode and attempts) retries every
request, each part of a multipart transfer included. botocore stops retrying once a response's
headers have arrived, so a small object whose body breaks mid-read is fetched again here, up to the
same number of attempts. A failure that is still transient at the end becomes a TransientStoreError
naming the operation and the key. Large files go up in parts (boto3 TransferConfig); an S3 object
becomes visible only when complete.

Immutability: every object under `runs/` is created with `If-None-Match: *` (PutObject, and
CompleteMultipartUpload for files sent in parts), so S3 itself refuses to overwrite a run's object,
and the IAM policies in infra/aws can require it. Each carries its sha256 as metadata: when a retry
of our own upload meets 412 (the first try landed but its answer was lost), the stored object is ours
if its sha256 and size match, and the upload succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import boto3
import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig

from d2v.artifacts.config import ArtifactsConfig
from d2v.artifacts.errors import ArtifactError, ArtifactNotFoundError, ConditionFailedError, RunExistsError
from d2v.artifacts.interface import BytesCallback, ObjectInfo
from d2v.artifacts.retry import botocore_retries, gave_up

T = TypeVar("T")

_MIB = 1024 * 1024
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable", "Throttling",
     "ThrottlingException", "RequestLimitExceeded", "500", "502", "503", "504"}
)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Keys (relative to the store's prefix) whose objects are created once and never replaced.
IMMUTABLE_PREFIX = "runs/"
SHA256_METADATA = "sha256"  # x-amz-meta-sha256 on every run object


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b"); the prefix may be empty."""
    if not uri.startswith("s3://"):
        raise ArtifactError(f"artifacts.uri: {uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ArtifactError(f"artifacts.uri: {uri!r} names no bucket (expected s3://<bucket>/<prefix>)")
    return bucket, prefix.strip("/")


# botocore parses the S3 service model and endpoint rules (~0.3 s) once per session's loader. A
# fresh session per client keeps credentials current with the environment; sharing the loader keeps
# the parsed models, which never change within a process.
_SHARED_LOADER = botocore.loaders.create_loader()


def make_client(cfg: ArtifactsConfig):  # -> botocore S3 client (untyped)
    core = botocore.session.get_session()
    core.register_component("data_loader", _SHARED_LOADER)
    try:
        session = boto3.session.Session(botocore_session=core, profile_name=cfg.profile,
                                        region_name=cfg.region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ArtifactError(f"artifacts.profile: {exc}") from None
    client_config = botocore.config.Config(
        retries=botocore_retries(cfg.retry),
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        # Custom endpoints (MinIO, moto, IP addresses) rarely resolve bucket sub-domains.
        s3={"addressing_style": "path"} if cfg.endpoint_url else None,
    )
    try:
        return session.client("s3", endpoint_url=cfg.endpoint_url, config=client_config)
    except botocore.exceptions.ProfileNotFound as exc:  # credentials are resolved here
        raise ArtifactError(f"artifacts.profile: {exc}") from None


def is_transient(exc: BaseException) -> bool:
    """Connection trouble, timeouts, throttling and 5xx are worth retrying; the rest is not."""
    if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        return True
    # s3transfer gave up re-reading a download's body: a stream that breaks after the response
    # arrived is past botocore's retries, and s3transfer's num_download_attempts covers only that.
    if isinstance(exc, RetriesExceededError):
        return True
    if isinstance(exc, S3UploadFailedError):  # wraps the ClientError of a (multipart) upload
        return exc.__context__ is not None and is_transient(exc.__context__)
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or status >= 500
    return False


class S3Backend:
    def __init__(self, cfg: ArtifactsConfig) -> None:
        self.cfg = cfg
        self.uri = cfg.uri.rstrip("/")
        self.bucket, self.prefix = parse_s3_uri(cfg.uri)
        if cfg.multipart_chunk_mb < 5 or cfg.multipart_threshold_mb < 5:
            raise ArtifactError(
                f"artifacts.multipart_chunk_mb / multipart_threshold_mb: {cfg.multipart_chunk_mb} / "
                f"{cfg.multipart_threshold_mb}: expected >= 5 (S3's minimum part size is 5 MiB)")
        self.client = make_client(cfg)
        self.transfer = TransferConfig(
            multipart_threshold=cfg.multipart_threshold_mb * _MIB,
            multipart_chunksize=cfg.multipart_chunk_mb * _MIB,
            max_concurrency=cfg.max_concurrency,
        )
        # s3transfer accepts no If-None-Match in upload_file's ExtraArgs and never passes one to
        # CompleteMultipartUpload, so the condition is added to the request parameters here.
        for operation in ("PutObject", "CompleteMultipartUpload"):
            self.client.meta.events.register(f"before-parameter-build.s3.{operation}",
                                             self._create_runs_conditionally)

    def _create_runs_conditionally(self, params: dict, **_: object) -> None:
        """Every write under runs/ is a create-if-absent, unless the caller set a condition itself."""
        if (params.get("Bucket") == self.bucket and str(params.get("Key", "")).startswith(self._key(IMMUTABLE_PREFIX))
                and "IfMatch" not in params and "IfNoneMatch" not in params):
            params["IfNoneMatch"] = "*"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        where = f"{self.uri}: {what}"
        try:
            return fn()
        except botocore.exceptions.NoCredentialsError:
            raise ArtifactError(
                f"{where}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or artifacts.profile)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - classified just below
            if is_transient(exc):  # botocore already retried it as often as configured
                raise gave_up(where, self.cfg.retry, exc) from exc
            if isinstance(exc, (botocore.exceptions.ClientError, S3UploadFailedError)):
                raise self._translate(where, exc) from exc
            raise

    def _translate(self, where: str, exc: Exception) -> ArtifactError:
        inner = exc.__context__ if isinstance(exc, S3UploadFailedError) else exc
        code = ""
        if isinstance(inner, botocore.exceptions.ClientError):
            code = str(inner.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return ArtifactError(f"{where}: bucket {self.bucket!r} does not exist "
                                 "(create it, e.g. `d2v artifacts init`)")
        if code in _MISSING_CODES:
            return ArtifactNotFoundError(f"{where}: no such object")
        if code in ("PreconditionFailed", "412"):
            return RunExistsError(f"{where}: object already exists")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ArtifactError(f"{where}: access denied ({code}); check the AWS credentials")
        return ArtifactError(f"{where}: {' '.join(str(exc).split())}")

    def put_file(self, key: str, path: Path, callback: BytesCallback | None = None, *,
                 sha256: str | None = None) -> None:
        full = self._key(key)
        extra = {"Metadata": {SHA256_METADATA: sha256}} if sha256 else None
        try:
            self._call(f"upload {key}", lambda: self.client.upload_file(
                str(path), self.bucket, full, ExtraArgs=extra, Config=self.transfer, Callback=callback))
        except RunExistsError:  # 412 on the create-if-absent
            if sha256 is None or not self._holds(key, sha256, path.stat().st_size):
                raise RunExistsError(f"{self.uri}: object {key!r} already exists with other content; "
                                     "run objects are never overwritten") from None
            # else: an earlier try of this very upload landed and only its answer was lost

    def _holds(self, key: str, sha256: str, size: int) -> bool:
        """Whether `key` is the object an upload of (sha256, size) would have written."""
        full = self._key(key)
        head = self._call(f"head {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        return head.get("Metadata", {}).get(SHA256_METADATA) == sha256 and head.get("ContentLength") == size

    def get_file(self, key: str, path: Path, callback: BytesCallback | None = None) -> None:
        full = self._key(key)
        self._call(f"download {key}", lambda: self.client.download_file(
            self.bucket, full, str(path), Config=self.transfer, Callback=callback))

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        extra = {} if overwrite else {"IfNoneMatch": "*"}  # conditional write: create-if-absent
        full = self._key(key)
        self._call(f"put {key}", lambda: self.client.put_object(
            Bucket=self.bucket, Key=full, Body=data, **extra))

    def _get_object(self, key: str) -> tuple[bytes, str]:
        """The whole body and ETag of a small object; a body that breaks mid-read is fetched again."""
        full = self._key(key)

        def fetch() -> tuple[bytes, str]:
            for attempt in range(1, self.cfg.retry.attempts + 1):
                response = self.client.get_object(Bucket=self.bucket, Key=full)
                try:
                    return response["Body"].read(), str(response["ETag"])
                except botocore.exceptions.HTTPClientError:  # ResponseStreamingError, read timeout
                    if attempt == self.cfg.retry.attempts:
                        raise
            raise AssertionError("unreachable: attempts >= 1")

        return self._call(f"get {key}", fetch)

    def get_bytes_tagged(self, key: str) -> tuple[bytes, str] | None:
        try:
            return self._get_object(key)
        except ArtifactNotFoundError:
            return None

    def put_bytes_if(self, key: str, data: bytes, *, expected_tag: str | None) -> None:
        # S3 conditional writes: If-Match on the ETag read (or If-None-Match: * for a new object).
        # A lost race is 412 PreconditionFailed, or 409 ConditionalRequestConflict while another
        # conditional write to the key is in flight; neither is retried.
        condition = {"IfNoneMatch": "*"} if expected_tag is None else {"IfMatch": expected_tag}
        full = self._key(key)
        try:
            self._call(f"put {key}", lambda: self.client.put_object(
                Bucket=self.bucket, Key=full, Body=data, **condition))
        except RunExistsError:  # how _translate names a 412
            raise ConditionFailedError(f"{self.uri}: object {key!r} changed since it was read") from None
        except ArtifactError as exc:
            if "ConditionalRequestConflict" in str(exc) or "(409)" in str(exc):
                raise ConditionFailedError(f"{self.uri}: object {key!r}: a concurrent conditional write") from None
            raise

    def get_bytes(self, key: str) -> bytes:
        return self._get_object(key)[0]

    def exists(self, key: str) -> bool:
        try:
            full = self._key(key)
            self._call(f"head {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        except ArtifactNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        full = self._key(key)  # S3 answers 204 whether or not the key existed
        self._call(f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        strip = len(self._key(""))
        full = self._key(prefix)

        def list_all() -> list[ObjectInfo]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full)
            return [ObjectInfo(obj["Key"][strip:], obj["Size"])
                    for page in pages for obj in page.get("Contents", [])]

        yield from self._call(f"list {prefix or '/'}", list_all)


# What `d2v artifacts init` turns on, in order: old versions of every object kept (an overwrite or
# delete can be undone), objects encrypted at rest by default (SSE-S3), no public access, and the
# parts of multipart uploads that never completed (a publish that died) removed after a week.
BUCKET_HARDENING = ("versioning", "default encryption", "public-access block", "incomplete-upload cleanup")
ABORT_INCOMPLETE_UPLOADS_DAYS = 7
_ABORT_RULE_ID = "d2v-abort-incomplete-uploads"


def ensure_bucket(cfg: ArtifactsConfig, *, harden: bool = True) -> bool:
    """Create the bucket of `cfg.uri` if it does not exist (True if it was created); with `harden`,
    enable BUCKET_HARDENING on it (idempotent) or raise ArtifactError naming what the endpoint refused."""
    backend = S3Backend(cfg)
    client = backend.client
    created = False
    try:
        backend._call("head bucket", lambda: client.head_bucket(Bucket=backend.bucket))
    except ArtifactNotFoundError:
        region = client.meta.region_name
        extra = {} if region in (None, "us-east-1") else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        backend._call("create bucket", lambda: client.create_bucket(Bucket=backend.bucket, **extra))
        created = True
    if harden:
        harden_bucket(backend)
    return created


def harden_bucket(backend: S3Backend) -> None:
    client, bucket = backend.client, backend.bucket
    steps = {
        "versioning": lambda: client.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
        "default encryption": lambda: client.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}),
        "public-access block": lambda: client.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True}),
        "incomplete-upload cleanup": lambda: _add_abort_incomplete_uploads_rule(client, bucket),
    }
    for name in BUCKET_HARDENING:
        try:
            backend._call(f"enable {name}", steps[name])
        except ArtifactError as exc:
            raise ArtifactError(
                f"{exc}; the bucket exists but {name} could not be enabled, so runs there would not be "
                "protected as d2v assumes. Fix the endpoint's settings or permissions, or run "
                "`d2v artifacts init --no-harden` to accept an unprotected bucket knowingly"
            ) from exc


def _lifecycle_rules(client, bucket: str) -> list[dict]:  # noqa: ANN001 - botocore client
    try:
        return list(client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise


def _add_abort_incomplete_uploads_rule(client, bucket: str) -> None:  # noqa: ANN001
    """Add the rule unless one already aborts incomplete uploads bucket-wide; the bucket's other
    lifecycle rules are kept (a lifecycle PUT replaces the whole configuration)."""
    rules = _lifecycle_rules(client, bucket)
    if any(_aborts_incomplete_uploads(rule) for rule in rules):
        return
    rules.append({"ID": _ABORT_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
                  "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS}})
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


def _aborts_incomplete_uploads(rule: dict) -> bool:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    return (rule.get("Status") == "Enabled" and "AbortIncompleteMultipartUpload" in rule
            and not prefix and not set(rule.get("Filter", {})) - {"Prefix"})


def bucket_protection(backend: S3Backend) -> dict[str, bool]:
    """Which of BUCKET_HARDENING the bucket has (read back, for `d2v artifacts init` and tests)."""
    client, bucket = backend.client, backend.bucket
    versioning = client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        encrypted = bool(rules)
    except botocore.exceptions.ClientError:
        encrypted = False
    try:
        block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        blocked = all(block.values())
    except botocore.exceptions.ClientError:
        blocked = False
    try:
        cleanup = any(_aborts_incomplete_uploads(rule) for rule in _lifecycle_rules(client, bucket))
    except botocore.exceptions.ClientError:
        cleanup = False
    return {"versioning": versioning, "default encryption": encrypted, "public-access block": blocked,
            "incomplete-upload cleanup": cleanup}


__all__ = ["BUCKET_HARDENING", "S3Backend", "bucket_protection", "ensure_bucket", "harden_bucket", "is_transient", "make_client", "parse_s3_uri"]
