"""The README's example app runs as written."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import jwt as pyjwt

from tests.e2e.conftest import call

ROOT = Path(__file__).resolve().parents[2]


def test_example_app_runs_as_written(origin, monkeypatch):
    monkeypatch.setenv("ORIGIN", origin.url)
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("examples.app", None)
    app = importlib.import_module("examples.app").app
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"}
    with app.serve() as s:
        assert call(s.url, "/hello", headers=browser).json()["hello"] == "world"
        assert call(s.url, "/api/x", headers=browser).status == 401
        tok = pyjwt.encode(
            {"sub": "u1", "exp": int(time.time()) + 60}, "change-me-to-a-real-32-byte-secret!!", algorithm="HS256"
        )
        r = call(s.url, "/api/x", headers={**browser, "Authorization": f"Bearer {tok}"})
        assert r.status == 200 and r.json()["headers"]["x-user-id"] == "u1"
        assert call(s.url, "/flags/beta", method="PUT", body=b"on", headers=browser).json()["value"] == "on"
        assert call(s.url, "/flags/beta", headers=browser).json()["value"] == "on"
        assert call(s.url, "/admin/x", headers=browser).status == 403
        assert call(s.url, "/page", headers={"User-Agent": "curl/8"}).status == 403
        assert call(s.url, "/products/1", headers=browser).headers["x-cache"] in {"MISS", "BYPASS"}
