"""JSON serialization used when orjson is not installed (it is a declared dependency)."""

import json


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
