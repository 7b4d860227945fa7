from __future__ import annotations

import pytest

from d2v.artifacts.config import RetryConfig
from d2v.artifacts.errors import TransientStoreError
from d2v.artifacts.retry import backoff_delays, call_with_retry


class Flaky:
    """Fails with `error` for the first `failures` calls, then returns "ok"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def transient(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


def test_backoff_doubles_and_is_capped() -> None:
    cfg = RetryConfig(attempts=6, base_delay_s=0.5, max_delay_s=3.0, sdk_attempts=1)
    assert backoff_delays(cfg) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delays(RetryConfig(attempts=1)) == []


def test_transient_failures_are_retried_with_the_backoff_delays() -> None:
    slept: list[float] = []
    fn = Flaky(2, ConnectionError("refused"))
    cfg = RetryConfig(attempts=4, base_delay_s=0.1, max_delay_s=1.0)
    assert call_with_retry(fn, what="op", cfg=cfg, is_transient=transient, sleep=slept.append) == "ok"
    assert fn.calls == 3 and slept == [0.1, 0.2]


def test_the_retry_budget_is_bounded() -> None:
    slept: list[float] = []
    fn = Flaky(10, ConnectionError("refused"))
    cfg = RetryConfig(attempts=3, base_delay_s=0.1, max_delay_s=1.0)
    with pytest.raises(TransientStoreError, match="op: failed after 3 attempts: refused"):
        call_with_retry(fn, what="op", cfg=cfg, is_transient=transient, sleep=slept.append)
    assert fn.calls == 3 and slept == [0.1, 0.2]


def test_permanent_errors_are_not_retried() -> None:
    fn = Flaky(10, PermissionError("denied"))
    with pytest.raises(PermissionError):
        call_with_retry(fn, what="op", cfg=RetryConfig(), is_transient=transient,
                        sleep=lambda s: pytest.fail("slept on a permanent error"))
    assert fn.calls == 1
