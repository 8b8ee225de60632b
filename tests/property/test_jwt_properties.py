"""Hypothesis: tokens PyJWT makes verify to the same claims, for every algorithm; tokens PyJWT
rejects for structural reasons are rejected by edgecore too."""

from __future__ import annotations

import jwt as pyjwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgecore as ec
from tests.keys import ALL_ALGS, keypair

NOW = 1_700_000_000

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
claims_st = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in {"exp", "nbf", "iat", "aud", "iss"}),
    json_values,
    max_size=8,
).map(lambda d: {**d, "exp": NOW + 3600})

VERIFIERS = {alg: ec.JWTVerifier(keypair(alg).public_pem, algorithms=[alg]) for alg in ALL_ALGS}


@pytest.mark.parametrize("alg", ALL_ALGS)
@given(claims=claims_st)
def test_pyjwt_tokens_round_trip(alg, claims):
    token = pyjwt.encode(claims, keypair(alg).private, algorithm=alg)
    assert VERIFIERS[alg].verify(token, now=NOW) == claims


@given(claims=claims_st, data=st.data())
def test_no_token_pyjwt_rejects_is_accepted(claims, data):
    token = pyjwt.encode(claims, keypair("HS256").private, algorithm="HS256")
    # Corrupt one character, or cut the token; whatever PyJWT rejects, edgecore rejects.
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.sampled_from("A_-=+/. x"))
    bad = token[:i] + c + token[i + 1 :] if data.draw(st.booleans()) else token[:i]
    try:
        pyjwt.decode(bad, keypair("HS256").private, algorithms=["HS256"], options={"verify_exp": False})
        pyjwt_ok = True
    except pyjwt.InvalidTokenError:
        pyjwt_ok = False
    try:
        VERIFIERS["HS256"].verify(bad, now=NOW)
        ours_ok = True
    except ec.JWTError:
        ours_ok = False
    assert pyjwt_ok or not ours_ok, f"edgecore accepted a token PyJWT rejects: {bad!r}"
