"""edgecore: the fast edge layer for Python.

The hot path runs in a Rust core (``edgecore._core``); this package is the public Python API.
"""

from edgecore._core import (
    URL,
    ConfigError,
    EdgeError,
    Geo,
    Headers,
    HTTPParseError,
    IncompleteRequest,
    ParserLimits,
    Request,
    Response,
    StoreError,
    UpstreamError,
    __version__,
    parse_request,
    parse_request_prefix,
    redirect,
)

__all__ = [
    "URL",
    "ConfigError",
    "EdgeError",
    "Geo",
    "HTTPParseError",
    "Headers",
    "IncompleteRequest",
    "ParserLimits",
    "Request",
    "Response",
    "StoreError",
    "UpstreamError",
    "__version__",
    "parse_request",
    "parse_request_prefix",
    "redirect",
]
