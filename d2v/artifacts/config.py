"""The `artifacts` section of params.yaml: where runs are published and how transfers behave."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryConfig:
    """Backoff for transient S3 errors (connection refused/reset, timeouts, throttling, 5xx).

    Two layers: botocore's own `standard` retry mode (`sdk_attempts` per request) and d2v's retry
    around each whole call (`attempts`), which also covers connection errors that outlast botocore's
    budget and failures inside multipart transfers. Delay before retry n (1-based) is
    min(base_delay_s * 2**(n-1), max_delay_s).
    """

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    sdk_attempts: int = 3


@dataclass(frozen=True)
class ArtifactsConfig:
    """Artifact store location and transfer settings.

    `uri` is `file://<dir>` (relative paths are relative to the working directory, i.e. the repo
    root for DVC stages) or `s3://<bucket>/<prefix>`. For S3, `endpoint_url` selects MinIO/moto/any
    S3-compatible server; `region` and `profile` select the AWS region and named profile. Anything
    left null falls back to the standard AWS environment (AWS_PROFILE, AWS_DEFAULT_REGION,
    AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
    """

    uri: str = "file://artifacts"
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    # Files at least this large go up in parts (S3 requires parts >= 5 MiB except the last).
    multipart_threshold_mb: int = 64
    multipart_chunk_mb: int = 16
    max_concurrency: int = 4
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retry: RetryConfig = field(default_factory=RetryConfig)


__all__ = ["ArtifactsConfig", "RetryConfig"]
