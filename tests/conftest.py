"""Shared pytest fixtures: a real S3 API on loopback, and the shipped fixtures packed once per session."""

from __future__ import annotations

import pytest

from testkit.pytest_guards import scheduling_unchanged  # noqa: F401
from testkit.servers import FaultProxy, Faults, S3Server


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto server subprocess) on 127.0.0.1 with bucket ``lerobot-wds-test``."""
    server = S3Server()
    server.make_bucket("lerobot-wds-test")
    yield server
    server.stop()


@pytest.fixture
def fault_proxy(s3_server):
    """Factory: ``fault_proxy(Faults(...))`` -> a FaultProxy to ``s3_server``, stopped after the test."""
    proxies = []

    def make(faults: Faults = Faults()) -> FaultProxy:
        proxies.append(FaultProxy(s3_server.port, faults))
        return proxies[-1]

    yield make
    for p in proxies:
        p.stop()


@pytest.fixture(scope="session")
def packed(tmp_path_factory):
    """Factory: ``packed("lerobot_v3_av1")`` -> path of that fixture packed once per session."""
    from reader_helpers import pack_fixture

    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = pack_fixture(name, tmp_path_factory.mktemp(f"packed_{name}"))
        return cache[name]

    return get
