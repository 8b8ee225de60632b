"""Fixtures for end-to-end tests: a real origin on loopback and an HTTP helper."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from tests.e2e.origin import Origin


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


class Reply:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = [(k.lower(), v) for k, v in headers]
        self.headers = {k: v for k, v in self.header_list}
        self.body = body

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k == name]

    def json(self):
        return json.loads(self.body)


def call(
    base: str,
    path: str,
    method: str = "GET",
    headers: dict | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> Reply:
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, r.getheaders(), r.read())
    finally:
        conn.close()
