"""Fixtures for the fault-injection suite: a fault proxy in front of any HTTP endpoint.

    def test_x(fault_proxy: FaultProxy): ...     # in front of the session's moto server (tests/conftest.py)
    def test_y(proxy_to): proxy = proxy_to("http://127.0.0.1:1234")

The scenarios themselves (fault_scenarios_*.py) need no fixture: they start what they use, so that
benchmarks/bench_faults.py can run them as a plain script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from s3_fault_proxy import FaultProxy


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str], FaultProxy]]:
    """Start fault proxies in front of given upstream URLs; all stopped after the test."""
    started: list[FaultProxy] = []

    def start(upstream: str) -> FaultProxy:
        proxy = FaultProxy(upstream).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def fault_proxy(moto_server: str, proxy_to: Callable[[str], FaultProxy]) -> FaultProxy:
    """A fault proxy (no rules yet) in front of the test's moto server; AWS dummy credentials set."""
    return proxy_to(moto_server)
