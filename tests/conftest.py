"""Shared pytest configuration and fixtures."""

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.redis_server import RedisServer

# `pytester`: runs pytest on generated test files (the edge_client fixture's tests).
pytest_plugins = ["pytester"]

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server for the session (tests that stop Redis start their own)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url
