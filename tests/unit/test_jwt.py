"""JWTVerifier: interoperability with PyJWT, and each unsafe input rejected with its own error."""

from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import edgecore as ec
from tests.keys import ALL_ALGS, PUBLIC_ALGS, keypair

NOW = 1_700_000_000


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: dict | str, payload: dict | str, secret: bytes = b"s" * 64) -> str:
    """A token with arbitrary (even invalid) header/payload, correctly HS256-signed."""
    import hashlib
    import hmac

    h = header if isinstance(header, str) else json.dumps(header)
    p = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{b64(h)}.{b64(p)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def verifier(**kw) -> ec.JWTVerifier:
    kw.setdefault("algorithms", ["HS256"])
    return ec.JWTVerifier(b"s" * 64, **kw)


GOOD = {"sub": "u1", "exp": NOW + 60}


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_pyjwt_tokens_verify_for_every_algorithm(alg):
    kp = keypair(alg)
    claims = {
        "sub": "user-1",
        "exp": NOW + 60,
        "nbf": NOW - 1,
        "iat": NOW,
        "aud": "api",
        "iss": "idp",
        "n": [1, {"a": None}],
    }
    token = pyjwt.encode(claims, kp.private, algorithm=alg, headers={"kid": "k1"})
    v = ec.JWTVerifier(kp.public_pem, algorithms=[alg], audience="api", issuer="idp")
    assert v.verify(token, now=NOW) == claims
    assert v.verify(token.encode(), now=NOW) == claims
    # The same key as a JWK, and inside a JWK Set selected by kid.
    jwk = json.loads(pyjwt.algorithms.get_default_algorithms()[alg].to_jwk(kp.public_obj or kp.private))
    jwk["kid"] = "k1"
    assert ec.JWTVerifier(jwk, algorithms=[alg], audience="api", issuer="idp").verify(token, now=NOW) == claims
    other = dict(jwk, kid="k0")
    v = ec.JWTVerifier(jwks={"keys": [other, jwk]}, algorithms=[alg], audience="api", issuer="idp")
    assert v.verify(token, now=NOW)["sub"] == "user-1"


@pytest.mark.parametrize("alg", PUBLIC_ALGS)
def test_tampered_signatures_fail(alg):
    kp = keypair(alg)
    token = pyjwt.encode(GOOD, kp.private, algorithm=alg)
    head, _payload, sig = token.split(".")
    forged = f"{head}.{b64(json.dumps(dict(GOOD, sub='admin')))}.{sig}"
    v = ec.JWTVerifier(kp.public_pem, algorithms=[alg])
    with pytest.raises(ec.InvalidSignatureError):
        v.verify(forged, now=NOW)


def test_alg_none_in_any_case_is_rejected():
    for alg in ["none", "None", "NONE", "nOnE"]:
        token = f"{b64(json.dumps({'alg': alg}))}.{b64(json.dumps(GOOD))}."
        with pytest.raises(ec.InvalidAlgorithmError, match="none"):
            verifier().verify(token, now=NOW)
    with pytest.raises(ec.ConfigError, match="none"):
        ec.JWTVerifier(b"s" * 64, algorithms=["none"])


def test_alg_not_in_algorithms_is_rejected():
    token = pyjwt.encode(GOOD, b"s" * 64, algorithm="HS512")
    with pytest.raises(ec.InvalidAlgorithmError, match="HS512 is not allowed"):
        verifier().verify(token, now=NOW)


def test_hs256_with_an_rsa_public_key_as_secret_fails():
    kp = keypair("RS256")
    pem = kp.public_pem.encode()
    # The classic confusion: sign HS256 with the public key's PEM bytes as the secret.
    import hashlib
    import hmac

    signing_input = f"{b64(json.dumps({'alg': 'HS256'}))}.{b64(json.dumps(GOOD))}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(sig)}"
    v = ec.JWTVerifier(kp.public_pem, algorithms=["RS256"])
    with pytest.raises(ec.InvalidAlgorithmError):
        v.verify(token, now=NOW)
    # And a verifier cannot even be configured to treat a PEM key as an HMAC secret.
    with pytest.raises(ec.ConfigError, match="HMAC"):
        ec.JWTVerifier(kp.public_pem, algorithms=["HS256"])
    with pytest.raises(ec.ConfigError, match="mix"):
        ec.JWTVerifier(kp.public_pem, algorithms=["HS256", "RS256"])


def test_crit_is_rejected_when_unknown_or_empty():
    with pytest.raises(ec.InvalidClaimError, match="empty"):
        verifier().verify(hs256({"alg": "HS256", "crit": []}, GOOD), now=NOW)
    with pytest.raises(ec.InvalidClaimError, match="critical"):
        verifier().verify(hs256({"alg": "HS256", "crit": ["exp"], "exp": 1}, GOOD), now=NOW)


def test_key_naming_header_fields_are_never_used():
    # A token that carries its own key (jwk), a URL to fetch one (jku, x5u) or a chain (x5c),
    # signed by the attacker's key: the configured key is used, so it fails.
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    headers = {"jwk": jwk, "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/x", "x5c": ["AAAA"]}
    token = pyjwt.encode(GOOD, attacker, algorithm="RS256", headers=headers)
    v = ec.JWTVerifier(keypair("RS256").public_pem, algorithms=["RS256"])
    with pytest.raises(ec.InvalidSignatureError):
        v.verify(token, now=NOW)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("bad", ["1700000100", True, False, None, [1], {"a": 1}])
def test_time_claims_of_the_wrong_type_are_invalid_not_absent(claim, bad):
    payload = dict(GOOD, **{claim: bad})
    with pytest.raises(ec.InvalidClaimError, match=f"{claim} must be a number"):
        verifier().verify(hs256({"alg": "HS256"}, payload), now=NOW)
    with pytest.raises(pyjwt.InvalidTokenError):
        pyjwt.decode(hs256({"alg": "HS256"}, payload), b"s" * 64, algorithms=["HS256"])


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t + "=", id="padding"),
        pytest.param(lambda t: t.replace("-", "+").replace("_", "/"), id="plus-slash"),
        pytest.param(lambda t: t[:10] + " " + t[10:], id="space"),
        pytest.param(lambda t: t[:10] + "\n" + t[10:], id="newline"),
        pytest.param(lambda t: t + ".x", id="four-segments"),
        pytest.param(lambda t: t.rsplit(".", 1)[0], id="two-segments"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_bad_encodings_are_malformed(mangle):
    token = hs256({"alg": "HS256", "x": "?>?>"}, dict(GOOD, pad="??>>"))
    bad = mangle(token)
    if bad == token:
        pytest.skip("mangling did not change this token")
    with pytest.raises((ec.MalformedTokenError, ec.InvalidSignatureError)):
        verifier().verify(bad, now=NOW)


def test_padded_segment_with_valid_signature_is_malformed():
    # Sign the padded form, so only the base64url rule can reject it.
    import hashlib
    import hmac

    h = b64(json.dumps({"alg": "HS256"}))
    p = base64.urlsafe_b64encode(json.dumps(GOOD).encode()).decode()
    assert p.endswith("="), "payload length chosen to need padding"
    si = f"{h}.{p}"
    token = f"{si}.{b64(hmac.new(b's' * 64, si.encode(), hashlib.sha256).digest())}"
    with pytest.raises(ec.MalformedTokenError, match="base64url"):
        verifier().verify(token, now=NOW)


def test_non_canonical_trailing_bits_are_malformed():
    token = hs256({"alg": "HS256"}, GOOD)
    head, payload, sig = token.split(".")
    # The last char of a 32-byte signature carries 4 unused bits; setting one changes the text
    # but not the decoded bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    assert last % 4 == 0
    bad = f"{head}.{payload}.{sig[:-1]}{alphabet[last + 1]}"
    with pytest.raises(ec.MalformedTokenError, match="base64url"):
        verifier().verify(bad, now=NOW)


@pytest.mark.parametrize(
    ("header", "payload", "error"),
    [
        ('{"alg":"HS256","alg":"HS256"}', json.dumps(GOOD), ec.MalformedTokenError),
        ('{"alg":"HS256"}', '{"sub":"a","sub":"b","exp":1700000060}', ec.MalformedTokenError),
        ('["HS256"]', json.dumps(GOOD), ec.MalformedTokenError),
        ('{"alg":"HS256"}', "[1,2]", ec.MalformedTokenError),
        ('{"alg":"HS256"}', '"text"', ec.MalformedTokenError),
        ('{"alg":"HS256"', json.dumps(GOOD), ec.MalformedTokenError),
        ('{"typ":"JWT"}', json.dumps(GOOD), ec.InvalidAlgorithmError),
        ('{"alg":256}', json.dumps(GOOD), ec.InvalidAlgorithmError),
        ('{"alg":"HS256","kid":5}', json.dumps(GOOD), ec.MalformedTokenError),
    ],
)
def test_structure_rules(header, payload, error):
    with pytest.raises(error):
        verifier().verify(hs256(header, payload), now=NOW)


def test_oversized_tokens_are_rejected_before_decoding():
    with pytest.raises(ec.TokenTooLargeError, match="limit is 8192"):
        verifier().verify("a" * 9000, now=NOW)
    big = hs256({"alg": "HS256"}, dict(GOOD, pad="x" * 600))
    with pytest.raises(ec.TokenTooLargeError):
        verifier(max_token_bytes=512).verify(big, now=NOW)
    assert issubclass(ec.TokenTooLargeError, ec.MalformedTokenError)


def test_claim_checks_and_leeway():
    tok = lambda **c: hs256({"alg": "HS256"}, c)  # noqa: E731
    v = verifier(audience=["api", "web"], issuer="idp", leeway=10)
    base = {"exp": NOW + 60, "aud": "api", "iss": "idp"}
    assert v.verify(tok(**base), now=NOW)["aud"] == "api"
    assert v.verify(tok(**dict(base, aud=["x", "web"])), now=NOW)
    assert v.verify(tok(**dict(base, exp=NOW - 5)), now=NOW), "inside leeway"
    assert v.verify(tok(**dict(base, exp=NOW + 0.5)), now=NOW), "float times"
    with pytest.raises(ec.ExpiredTokenError):
        v.verify(tok(**dict(base, exp=NOW - 10)), now=NOW)
    with pytest.raises(ec.ImmatureTokenError, match="nbf"):
        v.verify(tok(**dict(base, nbf=NOW + 11)), now=NOW)
    with pytest.raises(ec.ImmatureTokenError, match="iat"):
        v.verify(tok(**dict(base, iat=NOW + 11)), now=NOW)
    with pytest.raises(ec.InvalidAudienceError):
        v.verify(tok(**dict(base, aud="apix")), now=NOW)
    with pytest.raises(ec.InvalidAudienceError):
        v.verify(tok(**dict(base, aud=["ap"])), now=NOW)
    with pytest.raises(ec.InvalidAudienceError):
        v.verify(tok(**dict(base, aud=[1])), now=NOW)
    with pytest.raises(ec.MissingClaimError, match="aud"):
        v.verify(tok(exp=NOW + 60, iss="idp"), now=NOW)
    with pytest.raises(ec.InvalidIssuerError):
        v.verify(tok(**dict(base, iss="other")), now=NOW)
    with pytest.raises(ec.MissingClaimError, match="iss"):
        v.verify(tok(exp=NOW + 60, aud="api"), now=NOW)
    with pytest.raises(ec.MissingClaimError, match="exp"):
        v.verify(tok(aud="api", iss="idp"), now=NOW)
    with pytest.raises(ec.InvalidAudienceError, match="no audience is configured"):
        verifier().verify(tok(exp=NOW + 60, aud="api"), now=NOW)
    assert verifier(required_claims=[]).verify(tok(sub="x"), now=NOW) == {"sub": "x"}
    with pytest.raises(ec.MissingClaimError, match="sub"):
        verifier(required_claims=["exp", "sub"]).verify(tok(exp=NOW + 60), now=NOW)
    # Real clock by default.
    assert verifier().verify(tok(exp=time.time() + 60))


def test_exception_tree():
    for cls in [ec.MalformedTokenError, ec.InvalidSignatureError, ec.ExpiredTokenError, ec.InvalidAudienceError]:
        assert issubclass(cls, ec.JWTError)
    assert issubclass(ec.JWTError, ec.EdgeError) and issubclass(ec.JWTError, ValueError)
    with pytest.raises(ec.ExpiredTokenError) as info:
        verifier().verify(hs256({"alg": "HS256"}, {"exp": NOW - 1}), now=NOW)
    assert info.value.status == 401


def test_configuration_errors():
    with pytest.raises(ec.ConfigError, match="HMAC secret is 16 bytes; HS256 needs at least 32"):
        ec.JWTVerifier(b"x" * 16, algorithms=["HS256"])
    with pytest.raises(ec.ConfigError, match="HS512 needs at least 64"):
        ec.JWTVerifier(b"x" * 48, algorithms=["HS512"])
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ec.ConfigError, match="RSA key is 1024 bits; at least 2048"):
        ec.JWTVerifier(pem, algorithms=["RS256"])
    with pytest.raises(ec.ConfigError, match="unsupported algorithm"):
        ec.JWTVerifier(b"x" * 64, algorithms=["HS999"])
    with pytest.raises(ec.ConfigError, match="exactly one"):
        ec.JWTVerifier(algorithms=["HS256"])
    with pytest.raises(ec.ConfigError, match="private key"):
        priv = keypair("ES256").private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        ec.JWTVerifier(priv, algorithms=["ES256"])
    with pytest.raises(ec.ConfigError, match="cannot be used with a P-256 key"):
        ec.JWTVerifier(keypair("ES256").public_pem, algorithms=["ES384"])
    with pytest.raises(ec.ConfigError, match="keys"):
        ec.JWTVerifier(jwks={"nope": []}, algorithms=["RS256"])
    with pytest.raises(ec.ConfigError, match="leeway"):
        verifier(leeway=-1)
    assert "HS256" in repr(verifier())


def test_verify_signature_is_the_same_code_path():
    kp = keypair("ES256")
    token = pyjwt.encode(GOOD, kp.private, algorithm="ES256")
    head, payload, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    msg = f"{head}.{payload}".encode()
    assert ec.verify_signature("ES256", kp.public_pem, msg, raw) is True
    assert ec.verify_signature("ES256", kp.public_pem, msg + b"x", raw) is False
    # DER-encoded ECDSA signatures and wrong lengths are not JWS signatures.
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert ec.verify_signature("ES256", kp.public_pem, msg, der) is False
    assert ec.verify_signature("ES256", kp.public_pem, msg, raw[:-1]) is False
    assert ec.verify_signature("ES256", kp.public_pem, msg, b"\x00" * 64) is False, "r = s = 0"
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    assert ec.verify_signature("ES256", kp.public_pem, msg, n.to_bytes(32, "big") + raw[32:]) is False, "r = n"
    assert ec.verify_signature("HS256", b"k" * 32, b"m", b"x" * 32) is False
    with pytest.raises(ec.ConfigError, match="does not fit"):
        ec.verify_signature("RS256", kp.public_pem, msg, raw)
