"""ec.client_ip: the socket peer unless it is a trusted proxy."""

import pytest

import edgecore as ec

TRUSTED = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "1.1.1.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.1", "6.6.6.6, 198.51.100.7, 10.9.9.9", "198.51.100.7"),  # spoofed left part ignored
        ("192.168.1.7", "198.51.100.7", "198.51.100.7"),  # a single trusted address
        ("192.168.1.8", "198.51.100.7", "192.168.1.8"),
        ("10.0.0.1", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: leftmost
        ("10.0.0.1", "", "10.0.0.1"),
        ("::ffff:10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7"),
        ("2001:db8::1", "2001:db8::2, 2a00:1450::1", "2a00:1450::1"),
        ("10.0.0.1", "198.51.100.7:4711", "198.51.100.7"),
        ("10.0.0.1", "[2a00:1450::1]:443", "2a00:1450::1"),
        ("10.0.0.1", "198.51.100.7, not-an-ip", "10.0.0.1"),
    ],
)
def test_rule(peer, xff, expected):
    assert ec.client_ip(peer, {"X-Forwarded-For": xff}, TRUSTED) == expected


def test_multiple_header_fields_are_one_list():
    h = ec.Headers([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7, 10.0.0.3")])
    assert ec.client_ip("10.0.0.1", h, TRUSTED) == "198.51.100.7"


def test_no_trusted_proxies_means_the_peer():
    assert ec.client_ip("::ffff:203.0.113.1", {"X-Forwarded-For": "1.1.1.1"}) == "203.0.113.1"


def test_errors():
    with pytest.raises(ValueError, match="nope"):
        ec.client_ip("nope")
    with pytest.raises(ec.ConfigError, match=r"10\.0\.0\.0/99"):
        ec.client_ip("10.0.0.1", None, ["10.0.0.0/99"])
