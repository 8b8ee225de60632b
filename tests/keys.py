"""Key pairs for every JWS algorithm, generated once per test session (never committed)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PUBLIC_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
HMAC_ALGS = ["HS256", "HS384", "HS512"]
ALL_ALGS = HMAC_ALGS + PUBLIC_ALGS


@dataclass(frozen=True)
class KeyPair:
    alg: str
    private: object  # what PyJWT signs with
    public_pem: str  # what edgecore verifies with
    public_obj: object | None = None


def _pem(pub) -> str:
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@functools.cache
def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def keypair(alg: str) -> KeyPair:
    if alg.startswith("HS"):
        secret = ("s" * 64).encode()
        return KeyPair(alg, secret, secret.decode())
    if alg[:2] in ("RS", "PS"):
        priv = rsa_key()
    elif alg == "ES256":
        priv = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        priv = ec.generate_private_key(ec.SECP384R1())
    elif alg == "ES512":
        priv = ec.generate_private_key(ec.SECP521R1())
    else:
        priv = ed25519.Ed25519PrivateKey.generate()
    return KeyPair(alg, priv, _pem(priv.public_key()), priv.public_key())
