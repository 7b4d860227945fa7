"""The `artifacts` section of params.yaml: where runs are published and how transfers behave."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal


@dataclass(frozen=True)
class RetryConfig:
    """How transient S3 errors (connection refused/reset, timeouts, throttling, 5xx) are retried.

    One layer retries: botocore's own retry handler on every request (d2v.artifacts.retry turns
    these fields into botocore's `retries` setting). `attempts` counts every try of a request, the
    first included (botocore's `total_max_attempts`). `mode` is botocore's: "standard" (exponential
    backoff with full jitter, up to 20 s, and a retry quota per client) or "adaptive" (standard plus
    client-side rate limiting when S3 throttles). When the attempts are spent the store raises
    TransientStoreError naming the operation and the key.
    """

    mode: Literal["standard", "adaptive"] = "standard"
    attempts: int = 4


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
    # The credentials that move champion pointers (promoter_config); None: the same as `profile`.
    promoter_profile: str | None = None
    # Files at least this large go up in parts (S3 requires parts >= 5 MiB except the last).
    multipart_threshold_mb: int = 64
    multipart_chunk_mb: int = 16
    max_concurrency: int = 4
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retry: RetryConfig = field(default_factory=RetryConfig)


def promoter_config(cfg: ArtifactsConfig) -> ArtifactsConfig:
    """The store settings of a promotion: under `promoter_profile` where one is set. With the
    template's split roles, training credentials cannot move `champion`, only these can."""
    if cfg.promoter_profile is None:
        return cfg
    return replace(cfg, profile=cfg.promoter_profile)


__all__ = ["ArtifactsConfig", "RetryConfig", "promoter_config"]
