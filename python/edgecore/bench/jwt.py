"""JWTVerifier.verify vs PyJWT (key objects loaded once) and joserfc, per algorithm; and against
the raw signature verification of aws-lc (the backend) on the same machine."""

from __future__ import annotations

import base64

from edgecore import _core

from ._harness import Ratio, SuiteResult, compare, version

NOW = 1_700_000_000
CLAIMS = {
    "sub": "user-1234",
    "iss": "https://idp.example.com",
    "aud": "api",
    "exp": NOW + 3600,
    "iat": NOW,
    "scope": "read",
}


def _keys(alg: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg == "HS256":
        secret = b"k" * 32
        return secret, secret, secret.decode()
    if alg == "RS256":
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        priv = ec.generate_private_key(ec.SECP256R1())
    else:
        priv = ed25519.Ed25519PrivateKey.generate()
    pub = priv.public_key()
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pub, pem


def run(quick: bool = False) -> SuiteResult:
    import jwt as pyjwt
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import import_key

    import edgecore as ec

    contenders = {}
    ratios = []
    figures = {}
    for alg in ["HS256", "RS256", "ES256", "EdDSA"]:
        signing, public_obj, pem = _keys(alg)
        token = pyjwt.encode(CLAIMS, signing, algorithm=alg)
        verifier = ec.JWTVerifier(pem, algorithms=[alg], audience="api", issuer="https://idp.example.com")
        assert verifier.verify(token, now=NOW) == CLAIMS
        pyjwt_key = public_obj  # a loaded key object (PyJWT's best configuration)
        decoder = pyjwt.PyJWT(options={"verify_exp": False})
        assert decoder.decode(token, pyjwt_key, algorithms=[alg], audience="api")["sub"] == "user-1234"

        def ours(v=verifier, t=token):
            return v.verify(t, now=NOW)

        def theirs(d=decoder, t=token, k=pyjwt_key, a=alg):
            return d.decode(t, k, algorithms=[a], audience="api", issuer="https://idp.example.com")

        contenders[f"edgecore {alg}"] = ours
        contenders[f"PyJWT {alg}"] = theirs
        ratios.append(Ratio(f"edgecore {alg}", f"PyJWT {alg}", 8.0 if alg == "HS256" else 2.0))
        if alg in ("HS256", "RS256"):
            jkey = import_key(signing if alg == "HS256" else pem, "oct" if alg == "HS256" else "RSA")

            def jose(t=token, k=jkey, a=alg):
                return jose_jwt.decode(t, k, algorithms=[a]).claims

            contenders[f"joserfc {alg}"] = jose
        if alg != "HS256":
            head, payload, sig = token.split(".")
            raw_sig = base64.urlsafe_b64decode(sig + "==")
            raw = _core._raw_verify_seconds(alg, pem, f"{head}.{payload}".encode(), raw_sig, 2000 if quick else 10000)
            figures[f"raw aws-lc {alg} verify"] = f"{raw * 1e6:.2f} µs"
            figures[f"_raw_{alg}"] = raw
    stats = compare(contenders, rounds=7 if quick else 11)
    result = SuiteResult(
        "JWT verification (claims dict returned)",
        stats,
        ratios,
        notes=[version("PyJWT"), version("joserfc"), version("cryptography"), "edgecore backend: aws-lc-rs"],
    )
    for alg in ["RS256", "ES256", "EdDSA"]:
        raw = figures.pop(f"_raw_{alg}")
        overhead = stats[f"edgecore {alg}"].median / raw
        result.figures[f"edgecore {alg} / raw backend verify"] = f"{overhead:.3f}x (target <= 1.25x)"
    result.figures.update(figures)
    return result
