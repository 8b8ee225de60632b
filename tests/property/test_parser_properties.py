"""Hypothesis properties of the parser: it never crashes, what it accepts round-trips, and on
valid requests it agrees with h11 (a strict, independent pure-Python implementation)."""

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgecore as ec

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(TCHAR, min_size=1, max_size=12)
# Field values: visible ASCII and single inner spaces (no leading/trailing whitespace, which is OWS).
field_value = st.from_regex(r"\A[!-~]([ !-~]{0,30}[!-~])?\Z", fullmatch=True)
path = st.from_regex(r"\A/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,40}\Z", fullmatch=True).filter(
    lambda p: (
        "%" not in p or all(len(x) >= 2 and all(c in "0123456789abcdefABCDEF" for c in x[:2]) for x in p.split("%")[1:])
    )
)
query = st.from_regex(r"\A[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,30}\Z", fullmatch=True)
FRAMING = {"host", "content-length", "transfer-encoding"}
header_name = token.filter(lambda n: n.lower() not in FRAMING)


@st.composite
def valid_requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | token.map(str.upper))
    target = draw(path) + (("?" + q) if (q := draw(query)) else "")
    headers = [("Host", draw(st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?(:[0-9]{1,5})?\Z", fullmatch=True)))]
    headers += draw(st.lists(st.tuples(header_name, field_value), max_size=12))
    body = draw(st.binary(max_size=200))
    chunked = draw(st.booleans()) and bool(body)
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if chunked:
        cut = draw(st.integers(0, len(body)))
        parts = [p for p in (body[:cut], body[cut:]) if p]
        payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
        raw = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + payload
    else:
        raw = (head + (f"Content-Length: {len(body)}\r\n" if body else "") + "\r\n").encode() + body
    return raw


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data):
    try:
        ec.parse_request(data)
    except ec.HTTPParseError as e:
        assert e.status in {400, 413, 414, 431, 501}


@given(valid_requests(), st.binary(max_size=40))
def test_mutated_requests_never_crash(raw, noise):
    pos = len(noise) % (len(raw) + 1)
    data = raw[:pos] + noise + raw[pos:]
    try:
        ec.parse_request(data)
    except ec.HTTPParseError:
        pass


def key(r: ec.Request):
    framing = {"content-length", "transfer-encoding"}
    fields = sorted(((n, v) for n, v in r.headers.items() if n not in framing), key=lambda kv: kv[0])
    return (r.method, r.target, r.http_version, fields, r.body)


@given(valid_requests())
def test_accepted_requests_round_trip(raw):
    r = ec.parse_request(raw)
    again = ec.parse_request(r.to_bytes())
    assert key(again) == key(r)


# Mutations that an attacker (or a fuzzer) applies to a valid request: most make it invalid, some
# keep it valid (a changed byte in a value, a removed optional field), so both branches below run.
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10_000),
        st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\x00", b",", b":", b"a"]),
    ),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 4)),
    st.tuples(st.just("duplicate-line"), st.integers(0, 30), st.just(0)),
)


def mutate(raw: bytes, m) -> bytes:
    kind, at, arg = m
    at %= len(raw) + 1
    if kind == "flip":
        return raw[:at] + bytes([arg]) + raw[at + 1 :]
    if kind == "insert":
        return raw[:at] + arg + raw[at:]
    if kind == "delete":
        return raw[:at] + raw[at + arg :]
    lines = raw.split(b"\r\n")
    i = at % len(lines)
    return b"\r\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])


def test_whatever_a_mutation_leaves_accepted_round_trips():
    """400 valid requests, each mutated once: an accepted one round-trips through to_bytes, a
    refused one has a status the server would send. Both branches must be reached often (the
    counts are asserted), or the property says nothing."""
    seen = {"accepted": 0, "refused": 0}

    @settings(max_examples=400, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(valid_requests(), mutation)
    def run(raw, m):
        data = mutate(raw, m)
        try:
            r = ec.parse_request(data)
        except ec.HTTPParseError as e:
            assert e.status in {400, 413, 414, 431, 501}
            seen["refused"] += 1
            return
        seen["accepted"] += 1
        assert key(ec.parse_request(r.to_bytes())) == key(r)

    run()
    assert seen["accepted"] >= 40 and seen["refused"] >= 40, seen


def h11_parse(raw: bytes):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    body = b""
    while True:
        ev = conn.next_event()
        if isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            break
        else:
            raise AssertionError(ev)
    headers = [(n.decode(), v.decode("latin-1")) for n, v in event.headers]
    return event.method.decode(), event.target.decode(), headers, body


@given(valid_requests())
def test_agrees_with_h11(raw):
    method, target, headers, body = h11_parse(raw)
    ours = ec.parse_request(raw)
    assert ours.method == method
    assert ours.target == target
    # RFC 9110 §5.3: the order of fields with different names is not significant; the order of
    # values for one name is. Headers keeps the latter, so compare per name (stable sort).
    assert sorted(ours.headers.items(), key=lambda kv: kv[0]) == sorted(headers, key=lambda kv: kv[0])
    assert ours.body == body
