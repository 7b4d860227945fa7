"""Retries of S3 requests: botocore's own retry handler, configured from `artifacts.retry`.

There is no second backoff loop in d2v: botocore retries each request (connection errors,
timeouts, throttling, 5xx) with its own jittered exponential backoff, and d2v only turns the
final, still-transient failure into a TransientStoreError that names the operation and the key.
"""

from __future__ import annotations

from typing import Any

from d2v.artifacts.config import RetryConfig
from d2v.artifacts.errors import ArtifactError, TransientStoreError


def botocore_retries(cfg: RetryConfig) -> dict[str, Any]:
    """The `retries` argument of botocore.config.Config for `cfg`."""
    if cfg.attempts < 1:
        raise ArtifactError(f"artifacts.retry.attempts: {cfg.attempts}: expected >= 1 (1 = no retries)")
    return {"mode": cfg.mode, "total_max_attempts": cfg.attempts}


def gave_up(what: str, cfg: RetryConfig, exc: BaseException) -> TransientStoreError:
    """The error to raise once botocore has spent its attempts on a transient failure."""
    made = _attempts_made(exc)
    tries = f"up to {cfg.attempts} attempts" if made is None else f"{made} attempt{'s' * (made != 1)}"
    return TransientStoreError(
        f"{what}: failed after {tries} (botocore {cfg.mode} retries, artifacts.retry.attempts "
        f"= {cfg.attempts}): {_one_line(exc)}"
    )


def _attempts_made(exc: BaseException) -> int | None:
    """Tries botocore made, from the response metadata of an HTTP error (None for connection errors,
    which carry no response; botocore may also stop early when its retry quota runs dry)."""
    for candidate in (exc, exc.__context__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict) and "RetryAttempts" in response.get("ResponseMetadata", {}):
            return int(response["ResponseMetadata"]["RetryAttempts"]) + 1
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["botocore_retries", "gave_up"]
