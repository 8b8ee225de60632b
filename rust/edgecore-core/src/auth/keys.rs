//! Verification keys: HMAC secrets, PEM public keys, JWKs and JWK Sets, parsed once.
//!
//! Every key knows its family (HMAC, RSA, EC curve, Ed25519). A signature is only checked when the
//! token's `alg` belongs to the key's family (and matches the JWK's own `alg`, when it has one), so
//! the classic confusion — an HS256 token MAC'd with an RSA public key as the "secret" — cannot
//! verify: an RSA key has no HMAC form at all. Crypto is aws-lc-rs (constant-time HMAC compare,
//! fixed-width ECDSA signatures, RSA keys of 2048 to 8192 bits), and public keys are held as
//! `ParsedPublicKey`, so no key is re-parsed per verification.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::algorithm::Algorithm;
use super::der::{self, SpkiKind};
use crate::error::{Error, ErrorKind, Result};

/// Smallest RSA modulus we accept (NIST SP 800-131A; RFC 7518 §3.3 requires 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// The kind of key, which decides which algorithms may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// A shared secret for HS256/384/512.
    Hmac,
    /// An RSA public key for RS* and PS*.
    Rsa,
    /// An EC public key for the one ES* algorithm of its curve.
    Ec(Algorithm),
    /// An Ed25519 public key for EdDSA.
    Ed25519,
}

impl KeyFamily {
    /// Whether `alg` may be used with a key of this family.
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::Ec(a) => a == alg,
            KeyFamily::Ed25519 => alg == EdDSA,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyFamily::Hmac => "an HMAC secret",
            KeyFamily::Rsa => "an RSA key",
            KeyFamily::Ec(Algorithm::ES256) => "a P-256 key",
            KeyFamily::Ec(Algorithm::ES384) => "a P-384 key",
            KeyFamily::Ec(_) => "a P-521 key",
            KeyFamily::Ed25519 => "an Ed25519 key",
        }
    }
}

enum Material {
    Hmac {
        secret_len: usize,
        keys: Box<[hmac::Key; 3]>,
    },
    Rsa {
        bits: usize,
        parsed: Box<[ParsedPublicKey; 6]>,
    },
    Public(ParsedPublicKey),
}

/// One verification key.
pub struct Key {
    /// The JWK `kid`, if any.
    pub kid: Option<String>,
    /// The JWK `alg`, if any: the only algorithm this key may verify.
    pub alg: Option<Algorithm>,
    family: KeyFamily,
    material: Material,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish()
    }
}

fn cfg(msg: impl Into<String>) -> Error {
    Error::config(msg.into())
}

const RSA_ALGS: [(Algorithm, &sig::RsaParameters); 6] = [
    (Algorithm::RS256, &sig::RSA_PKCS1_2048_8192_SHA256),
    (Algorithm::RS384, &sig::RSA_PKCS1_2048_8192_SHA384),
    (Algorithm::RS512, &sig::RSA_PKCS1_2048_8192_SHA512),
    (Algorithm::PS256, &sig::RSA_PSS_2048_8192_SHA256),
    (Algorithm::PS384, &sig::RSA_PSS_2048_8192_SHA384),
    (Algorithm::PS512, &sig::RSA_PSS_2048_8192_SHA512),
];

fn ec_params(alg: Algorithm) -> (&'static sig::EcdsaVerificationAlgorithm, usize) {
    match alg {
        Algorithm::ES256 => (&sig::ECDSA_P256_SHA256_FIXED, 32),
        Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED, 48),
        _ => (&sig::ECDSA_P521_SHA512_FIXED, 66),
    }
}

impl Key {
    /// An HMAC secret.
    pub fn hmac(secret: &[u8]) -> Result<Key> {
        if secret.is_empty() {
            return Err(cfg("HMAC secret is empty"));
        }
        let keys =
            Box::new([hmac::HMAC_SHA256, hmac::HMAC_SHA384, hmac::HMAC_SHA512].map(|a| hmac::Key::new(a, secret)));
        Ok(Key {
            kid: None,
            alg: None,
            family: KeyFamily::Hmac,
            material: Material::Hmac {
                secret_len: secret.len(),
                keys,
            },
        })
    }

    /// An RSA key from a PKCS#1 RSAPublicKey DER.
    fn rsa_pkcs1(pkcs1: &[u8]) -> Result<Key> {
        let modulus = der::rsa_modulus(pkcs1).ok_or_else(|| cfg("invalid RSA public key"))?;
        let bits = der::bit_len(modulus);
        if bits < MIN_RSA_BITS {
            return Err(cfg(format!(
                "RSA key is {bits} bits; at least {MIN_RSA_BITS} are required"
            )));
        }
        let parse = |p: &'static sig::RsaParameters| {
            ParsedPublicKey::new(p, pkcs1).map_err(|e| cfg(format!("invalid RSA public key: {e}")))
        };
        let parsed = Box::new([
            parse(RSA_ALGS[0].1)?,
            parse(RSA_ALGS[1].1)?,
            parse(RSA_ALGS[2].1)?,
            parse(RSA_ALGS[3].1)?,
            parse(RSA_ALGS[4].1)?,
            parse(RSA_ALGS[5].1)?,
        ]);
        Ok(Key {
            kid: None,
            alg: None,
            family: KeyFamily::Rsa,
            material: Material::Rsa { bits, parsed },
        })
    }

    fn public(family: KeyFamily, alg: &'static dyn VerificationAlgorithm, raw: &[u8], what: &str) -> Result<Key> {
        let parsed = ParsedPublicKey::new(alg, raw).map_err(|e| cfg(format!("invalid {what} public key: {e}")))?;
        Ok(Key {
            kid: None,
            alg: None,
            family,
            material: Material::Public(parsed),
        })
    }

    /// An Ed25519 key from its 32-byte encoding. Small-order points are refused: with them a
    /// signature verifies for any message (Wycheproof's "identity public key universal forgery").
    fn ed25519(raw: &[u8]) -> Result<Key> {
        if raw.len() == 32 && is_small_order_ed25519(raw) {
            return Err(cfg(
                "Ed25519 public key is a small-order point (it would accept forged signatures)",
            ));
        }
        Self::public(KeyFamily::Ed25519, &sig::ED25519, raw, "Ed25519")
    }

    /// A key from a SubjectPublicKeyInfo DER.
    pub fn from_spki(der_bytes: &[u8]) -> Result<Key> {
        let (kind, bits) = der::spki(der_bytes).map_err(cfg)?;
        match kind {
            SpkiKind::Rsa => Self::rsa_pkcs1(bits),
            SpkiKind::EcP256 => Self::public(
                KeyFamily::Ec(Algorithm::ES256),
                ec_params(Algorithm::ES256).0,
                bits,
                "P-256",
            ),
            SpkiKind::EcP384 => Self::public(
                KeyFamily::Ec(Algorithm::ES384),
                ec_params(Algorithm::ES384).0,
                bits,
                "P-384",
            ),
            SpkiKind::EcP521 => Self::public(
                KeyFamily::Ec(Algorithm::ES512),
                ec_params(Algorithm::ES512).0,
                bits,
                "P-521",
            ),
            SpkiKind::Ed25519 => Self::ed25519(bits),
        }
    }

    /// A key from PEM text: `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<Key> {
        let (label, der_bytes) = decode_pem(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki(&der_bytes),
            "RSA PUBLIC KEY" => Self::rsa_pkcs1(&der_bytes),
            l if l.contains("PRIVATE KEY") => Err(cfg(
                "a private key was given; pass the public key (verification never needs the private key)",
            )),
            "CERTIFICATE" => Err(cfg("a certificate was given; pass its public key (PEM \"PUBLIC KEY\")")),
            other => Err(cfg(format!("unsupported PEM block {other:?}; expected \"PUBLIC KEY\""))),
        }
    }

    /// A key from a JWK (RFC 7517): `kty` oct, RSA, EC or OKP (Ed25519). Private members are ignored.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Key> {
        let s = |name: &str| jwk.get(name).and_then(Value::as_str);
        let b = |name: &str| -> Result<Vec<u8>> {
            let v = s(name).ok_or_else(|| cfg(format!("JWK is missing {name:?}")))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| cfg(format!("JWK member {name:?} is not base64url")))
        };
        let kty = s("kty").ok_or_else(|| cfg("JWK is missing \"kty\""))?;
        if let Some(u) = s("use") {
            if u != "sig" {
                return Err(cfg(format!("JWK has use={u:?}; only \"sig\" keys verify tokens")));
            }
        }
        let mut key = match kty {
            "oct" => Self::hmac(&b("k")?)?,
            "RSA" => {
                let (n, e) = (b("n")?, b("e")?);
                let der = sig::RsaPublicKeyComponents { n: &n[..], e: &e[..] }
                    .as_der()
                    .map_err(|_| cfg("JWK RSA key has invalid n or e"))?;
                Self::from_spki(der.as_ref())?
            }
            "EC" => {
                let alg = match s("crv") {
                    Some("P-256") => Algorithm::ES256,
                    Some("P-384") => Algorithm::ES384,
                    Some("P-521") => Algorithm::ES512,
                    other => return Err(cfg(format!("unsupported JWK EC curve {other:?}"))),
                };
                let (params, size) = ec_params(alg);
                let (x, y) = (b("x")?, b("y")?);
                if x.len() != size || y.len() != size {
                    return Err(cfg(format!("JWK EC coordinates must be {size} bytes each")));
                }
                let point = [&[4u8][..], &x, &y].concat();
                Self::public(KeyFamily::Ec(alg), params, &point, "EC")?
            }
            "OKP" => match s("crv") {
                Some("Ed25519") => Self::ed25519(&b("x")?)?,
                other => return Err(cfg(format!("unsupported JWK OKP curve {other:?} (only Ed25519)"))),
            },
            other => return Err(cfg(format!("unsupported JWK kty {other:?}"))),
        };
        key.kid = s("kid").map(str::to_owned);
        if let Some(a) = s("alg") {
            let alg = Algorithm::from_name(a).ok_or_else(|| cfg(format!("JWK has unsupported alg {a:?}")))?;
            if !key.family.allows(alg) {
                return Err(cfg(format!("JWK alg {a} does not fit {}", key.family.describe())));
            }
            key.alg = Some(alg);
        }
        Ok(key)
    }

    /// The key's family.
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// Checks that this key may be used with `alg` under the configured algorithms; for HMAC,
    /// that the secret is at least as long as the hash output (RFC 7518 §3.2).
    pub fn check_config(&self, alg: Algorithm) -> Result<()> {
        if !self.family.allows(alg) {
            return Err(cfg(format!(
                "algorithm {} cannot be used with {} (mixing HMAC and public-key algorithms for one key is refused)",
                alg.name(),
                self.family.describe()
            )));
        }
        if let Material::Hmac { secret_len, .. } = self.material {
            let need = alg.hmac_min_secret();
            if secret_len < need {
                return Err(cfg(format!(
                    "HMAC secret is {secret_len} bytes; {} needs at least {need} (the hash output size)",
                    alg.name()
                )));
            }
        }
        Ok(())
    }

    /// Whether the key's family and JWK `alg` allow `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.family.allows(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies `signature` over `message` with `alg`.
    ///
    /// `TokenAlgorithm` when the key cannot be used with `alg`; `TokenSignature` when it does not verify.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<()> {
        if !self.allows(alg) {
            return Err(Error::downstream(
                ErrorKind::TokenAlgorithm,
                format!("alg {} does not fit the key ({})", alg.name(), self.family.describe()),
            ));
        }
        let ok = match &self.material {
            Material::Hmac { keys, .. } => {
                let k = match alg {
                    Algorithm::HS256 => &keys[0],
                    Algorithm::HS384 => &keys[1],
                    _ => &keys[2],
                };
                hmac::verify(k, message, signature).is_ok()
            }
            Material::Rsa { parsed, .. } => {
                let i = RSA_ALGS.iter().position(|(a, _)| *a == alg).unwrap_or(0);
                parsed[i].verify_sig(message, signature).is_ok()
            }
            Material::Public(p) => p.verify_sig(message, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::downstream(
                ErrorKind::TokenSignature,
                "signature verification failed",
            ))
        }
    }

    /// Times `iterations` raw verifications with the backend (the parsed key, no JWT work): the
    /// baseline the benchmark compares `JWTVerifier.verify` with. Returns seconds per verification.
    pub fn raw_verify_seconds(&self, alg: Algorithm, message: &[u8], signature: &[u8], iterations: u32) -> f64 {
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(self.verify(alg, std::hint::black_box(message), signature).is_ok());
        }
        start.elapsed().as_secs_f64() / f64::from(iterations.max(1))
    }

    /// RSA modulus size, for diagnostics.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self.material {
            Material::Rsa { bits, .. } => Some(bits),
            _ => None,
        }
    }
}

/// The y coordinates (sign bit cleared) of the Ed25519 points of order 1, 2, 4 and 8, including
/// the non-canonical encodings of 0 and 1 — the list libsodium checks in `has_small_order`.
const SMALL_ORDER_Y: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1: the identity)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
    // p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    // p (non-canonical 0)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    // p + 1 (non-canonical 1)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
];

fn is_small_order_ed25519(key: &[u8]) -> bool {
    SMALL_ORDER_Y
        .iter()
        .any(|y| key[..31] == y[..31] && (key[31] & 0x7f) == y[31])
}

/// Decodes one PEM block: (label, DER bytes).
fn decode_pem(pem: &str) -> Result<(String, Vec<u8>)> {
    let pem = pem.trim();
    let rest = pem
        .strip_prefix("-----BEGIN ")
        .ok_or_else(|| cfg("not a PEM key (no -----BEGIN line)"))?;
    let (label, rest) = rest.split_once("-----").ok_or_else(|| cfg("malformed PEM header"))?;
    let end = format!("-----END {label}-----");
    let body = rest
        .split_once(end.as_str())
        .map(|(b, _)| b)
        .ok_or_else(|| cfg(format!("PEM has no {end:?} line")))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| cfg("PEM body is not valid base64"))?;
    Ok((label.to_owned(), der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_keys_verify_and_refuse_other_families() {
        let k = Key::hmac(&[7u8; 32]).unwrap();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]), b"msg");
        assert!(k.verify(Algorithm::HS256, b"msg", tag.as_ref()).is_ok());
        assert_eq!(
            k.verify(Algorithm::HS256, b"msh", tag.as_ref()).unwrap_err().kind,
            ErrorKind::TokenSignature
        );
        assert_eq!(
            k.verify(Algorithm::RS256, b"msg", tag.as_ref()).unwrap_err().kind,
            ErrorKind::TokenAlgorithm
        );
        assert!(k
            .check_config(Algorithm::HS512)
            .unwrap_err()
            .context
            .contains("needs at least 64"));
        assert!(k.check_config(Algorithm::ES256).unwrap_err().context.contains("mixing"));
    }

    #[test]
    fn pem_errors_are_precise() {
        assert!(Key::from_pem("hello").unwrap_err().context.contains("BEGIN"));
        let e = Key::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err();
        assert!(e.context.contains("private key"));
        let e = Key::from_pem("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----").unwrap_err();
        assert!(e.context.contains("base64"));
    }

    #[test]
    fn jwk_errors_are_precise() {
        let jwk = |s: &str| serde_json::from_str::<Map<String, Value>>(s).unwrap();
        assert!(Key::from_jwk(&jwk(r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#))
            .unwrap_err()
            .context
            .contains("32 bytes"));
        assert!(Key::from_jwk(&jwk(r#"{"kty":"XYZ"}"#))
            .unwrap_err()
            .context
            .contains("kty"));
        assert!(Key::from_jwk(&jwk(r#"{"kty":"oct","k":"c2VjcmV0","use":"enc"}"#))
            .unwrap_err()
            .context
            .contains("use"));
        assert!(Key::from_jwk(&jwk(r#"{"kty":"oct","k":"c2VjcmV0","alg":"RS256"}"#))
            .unwrap_err()
            .context
            .contains("does not fit"));
        let k = Key::from_jwk(&jwk(r#"{"kty":"oct","k":"c2VjcmV0","kid":"a","alg":"HS256"}"#)).unwrap();
        assert_eq!((k.kid.as_deref(), k.alg), (Some("a"), Some(Algorithm::HS256)));
        assert!(!k.allows(Algorithm::HS384));
    }
}
