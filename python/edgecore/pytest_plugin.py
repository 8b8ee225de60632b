"""The pytest plugin edgecore installs (entry point ``pytest11``): an ``edge_client`` fixture.

Define an ``edge_app`` fixture that returns your ``ec.Edge``; ``edge_client`` is an
``edgecore.testing.TestClient`` for it, served for the test and stopped after it::

    import pytest
    from myproject.edge import app

    @pytest.fixture
    def edge_app():
        return app

    def test_hello(edge_client):
        assert edge_client.get("/hello").status_code == 200
        edge_client.advance(61)  # the app's clocks move: tokens expire, limits refill
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from edgecore.testing import TestClient


@pytest.fixture
def edge_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A ``TestClient`` for the app the ``edge_app`` fixture returns."""
    # Imported here: loading the plugin must not need httpx (only using the fixture does).
    from edgecore.app import Edge
    from edgecore.testing import TestClient

    try:
        app = request.getfixturevalue("edge_app")
    except pytest.FixtureLookupError:
        raise pytest.UsageError("the edge_client fixture needs an edge_app fixture that returns your ec.Edge") from None
    if not isinstance(app, Edge):
        raise pytest.UsageError(f"the edge_app fixture must return an ec.Edge, not {type(app).__name__}")
    with TestClient(app) as client:
        yield client
