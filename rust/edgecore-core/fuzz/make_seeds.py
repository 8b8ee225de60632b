"""Writes the seed corpus of each fuzz target into seeds/<target>/ (committed; re-run after
editing). The http_parse seeds named smuggle-* are also sent through a running server by
tests/e2e/test_smuggling.py.

    python rust/edgecore-core/fuzz/make_seeds.py
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
assert len(SMUGGLED) == 35  # the Content-Length values below frame exactly this as a body


def post(*fields: bytes, body: bytes = b"0\r\n\r\n", line: bytes = b"POST /a HTTP/1.1") -> bytes:
    return line + b"\r\nHost: x\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body + SMUGGLED


CHUNKED = b"Transfer-Encoding: chunked"

# Published request-smuggling and parser-discrepancy cases (Kettle's "HTTP Desync Attacks",
# the HTTP Garden's findings, RFC 9112 §6 and §11.2), each hiding GET /smuggled behind a framing
# that some parser reads differently. The edge must refuse each, or frame it one way and close.
SMUGGLING = {
    # Content-Length and Transfer-Encoding together.
    "cl-te": post(b"Content-Length: 6", CHUNKED),
    "te-cl": post(CHUNKED, b"Content-Length: 40"),
    # Content-Length forms.
    "cl-plus": post(b"Content-Length: +35", body=b""),
    "cl-hex": post(b"Content-Length: 0x23", body=b""),
    "cl-negative": post(b"Content-Length: -1", body=b""),
    "cl-list": post(b"Content-Length: 35, 35", body=b""),
    "cl-two-values": post(b"Content-Length: 0", b"Content-Length: 35", body=b""),
    "cl-overflow": post(b"Content-Length: 18446744073709551653", body=b""),
    "cl-underscore": post(b"Content-Length: 3_5", body=b""),
    "cl-nul": post(b"Content-Length: 35\x00", body=b""),
    "cl-vtab": post(b"Content-Length:\x0b35", body=b""),
    "cl-space-before-colon": post(b"Content-Length : 35", body=b""),
    # Transfer-Encoding obfuscations.
    "te-space-before-colon": post(b"Transfer-Encoding : chunked", b"Content-Length: 35", body=b""),
    "te-obs-fold": post(b"X-A: 1", b" Transfer-Encoding: chunked", b"Content-Length: 35", body=b""),
    "te-obs-fold-value": post(b"Transfer-Encoding:", b" chunked", b"Content-Length: 35", body=b""),
    "te-xchunked": post(b"Transfer-Encoding: xchunked", body=b""),
    "te-chunked-identity": post(b"Transfer-Encoding: chunked, identity"),
    "te-identity-chunked": post(b"Transfer-Encoding: identity, chunked"),
    "te-twice": post(CHUNKED, CHUNKED),
    "te-second-field": post(CHUNKED, b"Transfer-Encoding: x"),
    "te-quoted": post(b'Transfer-Encoding: "chunked"', body=b""),
    "te-vtab": post(b"Transfer-Encoding:\x0bchunked", body=b""),
    "te-nul": post(b"Transfer-Encoding: chunked\x00", body=b""),
    "te-high-byte": post(b"Transfer-Encoding: \xffchunked", body=b""),
    "te-http10": post(CHUNKED, line=b"POST /a HTTP/1.0"),
    "te-gzip": post(b"Transfer-Encoding: gzip", body=b""),
    "te-chunked-gzip": post(b"Transfer-Encoding: chunked, gzip"),
    # Chunk sizes and extensions.
    "chunk-size-space": post(CHUNKED, body=b"5 \r\nhello\r\n0\r\n\r\n"),
    "chunk-size-0x": post(CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-plus": post(CHUNKED, body=b"+5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-underscore": post(CHUNKED, body=b"0_5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-negative": post(CHUNKED, body=b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overlong": post(CHUNKED, body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-bare-lf": post(CHUNKED, body=b"5;a=b\nhello\r\n0\r\n\r\n"),
    "chunk-size-bare-lf": post(CHUNKED, body=b"5\nhello\r\n0\r\n\r\n"),
    "chunk-data-too-long": post(CHUNKED, body=b"2\r\nhello\r\n0\r\n\r\n"),
    "chunk-no-crlf": post(CHUNKED, body=b"5\r\nhello0\r\n\r\n"),
    "chunk-last-bare-lf": post(CHUNKED, body=b"0\n\n"),
    "chunk-trailer-bare-lf": post(CHUNKED, body=b"0\r\nX: y\n\r\n"),
    "chunk-ext-nul": post(CHUNKED, body=b"5;a=\x00\r\nhello\r\n0\r\n\r\n"),
    # Heads.
    "bare-lf-head": b"POST /a HTTP/1.1\nHost: x\nContent-Length: 35\n\n" + SMUGGLED,
    "bare-cr-head": b"POST /a HTTP/1.1\rHost: x\r\nContent-Length: 35\r\n\r\n" + SMUGGLED,
    "nul-in-value": post(b"X: a\x00b", b"Content-Length: 35", body=b""),
    "high-byte-name": post(b"X\xff: 1", b"Content-Length: 35", body=b""),
    "version-1-2": post(b"Content-Length: 35", body=b"", line=b"POST /a HTTP/1.2"),
    "version-lower": post(b"Content-Length: 35", body=b"", line=b"POST /a http/1.1"),
    "space-in-target": post(b"Content-Length: 35", body=b"", line=b"POST /a b HTTP/1.1"),
    "double-space": post(b"Content-Length: 35", body=b"", line=b"POST  /a HTTP/1.1"),
}

VALID_HTTP = {
    "get": b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "post-cl": b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    "absolute-form": b"GET http://example.com:8080/p HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
}

CANONICAL = [
    "/",
    "//api/x",
    "/%61pi/x",
    "/api%2Fx",
    "/api%2fx",
    "/api%5Cx",
    "/api\\x",
    "/a/./b/../c",
    "/a/%2e%2e/b",
    "/login;jsessionid=1",
    "/..;/admin",
    "/admin/..%2F..%2Fetc",
    "/%252e%252e/",
    "/caf%C3%A9",
    "/%7euser",
    "/a//b///c/",
    "/.",
    "/..",
    "/a/..",
    "/x%00y",
    "Example.COM:80",
    "[::1]:8080",
    "a b/c@x",
    "host:99999",
    "xn--bcher-kva.example",
]


def jwt(mode: int, header: dict | bytes, payload: dict | bytes) -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return bytes([mode]) + h + b"\xff" + p


def b64(b: bytes) -> bytes:
    return base64.urlsafe_b64encode(b).rstrip(b"=")


GOOD = {"iss": "https://issuer.example", "aud": "api", "exp": 1_800_000_000, "sub": "alice"}
JWT = {
    "valid": jwt(0, {"alg": "HS256", "typ": "JWT"}, GOOD),
    "valid-hs384": jwt(0, {"alg": "HS384"}, GOOD),
    "alg-none": jwt(0, {"alg": "none"}, GOOD),
    "alg-NoNe": jwt(0, {"alg": "NoNe"}, GOOD),
    "alg-lowercase": jwt(0, {"alg": "hs256"}, GOOD),
    "alg-rs256-confusion": jwt(0, {"alg": "RS256"}, GOOD),
    "alg-hs512-not-allowed": jwt(0, {"alg": "HS512"}, GOOD),
    "crit": jwt(0, {"alg": "HS256", "crit": ["exp"]}, GOOD),
    "crit-empty": jwt(0, {"alg": "HS256", "crit": []}, GOOD),
    "dup-alg": jwt(0, b'{"alg":"HS256","alg":"none"}', GOOD),
    "dup-claim": jwt(0, {"alg": "HS256"}, b'{"iss":"https://issuer.example","aud":"api","exp":1,"exp":1800000000}'),
    "dup-nested": jwt(
        0, {"alg": "HS256"}, b'{"iss":"https://issuer.example","aud":"api","exp":1800000000,"x":{"a":1,"a":2}}'
    ),
    "exp-string": jwt(0, {"alg": "HS256"}, {**GOOD, "exp": "1800000000"}),
    "exp-past": jwt(0, {"alg": "HS256"}, {**GOOD, "exp": 1_600_000_000}),
    "exp-float": jwt(0, {"alg": "HS256"}, {**GOOD, "exp": 1.7e9 + 0.5}),
    "exp-huge": jwt(0, {"alg": "HS256"}, b'{"iss":"https://issuer.example","aud":"api","exp":1e400}'),
    "nbf-future": jwt(0, {"alg": "HS256"}, {**GOOD, "nbf": 1_800_000_000}),
    "aud-array": jwt(0, {"alg": "HS256"}, {**GOOD, "aud": ["x", "api"]}),
    "aud-mixed": jwt(0, {"alg": "HS256"}, {**GOOD, "aud": ["api", 1]}),
    "kid-number": jwt(0, {"alg": "HS256", "kid": 1}, GOOD),
    "jku-ignored": jwt(0, {"alg": "HS256", "jku": "https://evil.example/jwks"}, GOOD),
    "header-array": jwt(0, b'["alg","HS256"]', GOOD),
    "bom": jwt(0, b'\xef\xbb\xbf{"alg":"HS256"}', GOOD),
    "non-canonical-b64": jwt(1, b64(b'{"alg":"HS256"}')[:-1] + b"T", b64(json.dumps(GOOD).encode())),
    "padded-b64": jwt(1, base64.urlsafe_b64encode(b'{"alg":"HS256"}'), b64(json.dumps(GOOD).encode())),
    "std-alphabet": jwt(1, base64.b64encode(b'{"alg":"HS256","x":"??>"}'), b64(json.dumps(GOOD).encode())),
    "four-segments": jwt(1, b64(b'{"alg":"HS256"}'), b64(json.dumps(GOOD).encode()) + b".x"),
    "empty": bytes([2]),
    "dots": bytes([2]) + b"..",
    "unsigned": bytes([2]) + b64(b'{"alg":"none"}') + b"." + b64(json.dumps(GOOD).encode()) + b".",
    "jwk-rsa": bytes([2]) + b'{"kty":"RSA","n":"AQAB","e":"AQAB"}',
    "jwk-ec": bytes([2]) + b'{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}',
    "jwk-okp": bytes([2]) + b'{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}',
    "jwks": bytes([2]) + b'{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"EC"}]}',
    "pem": bytes([2]) + b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n",
}

CACHE = {
    "max-age": b"\x00\x00\x64cache-control: max-age=60\n",
    "private-quoted": b'\x00\x00\x64cache-control: private="set-cookie", max-age=60\n',
    "no-store-targeted": b"\x00\x00\x64cdn-cache-control: no-store\ncache-control: max-age=60\n",
    "s-maxage-auth": b"\x02\x00\x64cache-control: s-maxage=60\n",
    "expires": b"\x00\x00\x64expires: Sun, 06 Nov 1994 08:49:37 GMT\ndate: Sun, 06 Nov 1994 08:48:37 GMT\n",
    "expires-zero": b"\x00\x00\x64expires: 0\n",
    "age": b"\x00\x00\x64cache-control: max-age=60\nage: 99999999999999999999\n",
    "vary-star": b"\x00\x00\x64cache-control: max-age=60\nvary: accept, *\n",
    "set-cookie": b"\x00\x00\x64cache-control: public, max-age=60\nset-cookie: a=b\n",
    "last-modified": b"\x10\x00\x64last-modified: Sun, 06 Nov 1994 08:49:37 GMT\n",
    "status-206": b"\x00\x00\x6acache-control: max-age=60\n",
    "status-304": b"\x00\x00\xcccache-control: max-age=60\n",
}


def write(target: str, seeds: dict[str, bytes]) -> None:
    d = SEEDS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, data in seeds.items():
        (d / name).write_bytes(data)


def main() -> None:
    write("http_parse", {**{f"smuggle-{k}": v for k, v in SMUGGLING.items()}, **VALID_HTTP})
    write("canonical", {f"c{i:02d}": s.encode() for i, s in enumerate(CANONICAL)})
    write("jwt", JWT)
    write("cache_policy", CACHE)
    sys.path.insert(0, str(HERE.parents[2]))
    from tests.geo_data import write_asn_db, write_city_db

    d = SEEDS / "mmdb"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    write_city_db(d / "city")
    write_asn_db(d / "asn")


if __name__ == "__main__":
    main()
