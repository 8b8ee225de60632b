"""ec.compress: whatever the bytes and the level, independent decoders give the bytes back."""

from __future__ import annotations

import gzip

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecore as ec

DECODE = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
}
LEVELS = {"gzip": (1, 9), "br": (0, 11), "zstd": (1, 19)}


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=5000), st.text(max_size=3000).map(str.encode)),
    coding=st.sampled_from(sorted(DECODE)),
    pick=st.floats(0, 1),
)
def test_every_coding_round_trips(data, coding, pick):
    lo, hi = LEVELS[coding]
    level = lo + round(pick * (hi - lo))
    assert DECODE[coding](ec.compress(data, coding, level)) == data
    assert DECODE[coding](ec.compress(data, coding)) == data


def test_an_unknown_algorithm_or_level_is_a_config_error_naming_it():
    with pytest.raises(ec.ConfigError, match=r'unknown algorithm "deflate" \(zstd, br or gzip\)'):
        ec.compress(b"x", "deflate")
    with pytest.raises(ec.ConfigError, match=r"gzip takes levels 1..=9, not 10"):
        ec.compress(b"x", "gzip", 10)
