"""Exponential backoff around one store call; which errors count as transient is the caller's call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from d2v.artifacts.config import RetryConfig
from d2v.artifacts.errors import TransientStoreError

T = TypeVar("T")

log = logging.getLogger(__name__)


def backoff_delays(cfg: RetryConfig) -> list[float]:
    """Delays slept between the `cfg.attempts` tries: base, 2*base, 4*base, ... capped at max."""
    return [min(cfg.base_delay_s * 2**i, cfg.max_delay_s) for i in range(max(cfg.attempts - 1, 0))]


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    cfg: RetryConfig,
    is_transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn`, retrying transient failures; raise TransientStoreError once the budget is spent.

    Non-transient errors propagate unchanged on the first occurrence (retrying a 403 or a missing
    bucket only delays the message the user needs).
    """
    delays = backoff_delays(cfg)
    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not is_transient(exc):
                raise
            if attempt == len(delays):
                raise TransientStoreError(
                    f"{what}: failed after {attempt + 1} attempts: {_one_line(exc)}"
                ) from exc
            log.warning("%s: transient error (%s); retry %d in %.2fs", what, _one_line(exc),
                        attempt + 1, delays[attempt])
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["backoff_delays", "call_with_retry"]
