//! The token checks, in the order they run. Cheap structural checks come first, the signature
//! before the payload is parsed (a forged token costs one MAC or one signature check and no JSON),
//! and the claims last:
//!
//! 1. size (`max_token_bytes`, before any decoding), three segments;
//! 2. header: canonical base64url, a JSON object without duplicate members, `alg` a string that is
//!    not `none` (any case) and is in `algorithms`, no `crit` (we implement no extensions, so any
//!    `crit` — and an empty one — is refused), `kid` a string when present. `jku`, `x5u`, `jwk` and
//!    `x5c` are never read;
//! 3. key: by `kid` in a key set; the only key when there is one;
//! 4. signature, with the key's family and the token's `alg` required to agree;
//! 5. payload: canonical base64url, a JSON object without duplicate members;
//! 6. claims: `exp`, `nbf`, `iat` must be numbers when present (a string, bool or null is invalid,
//!    never "absent"); `exp`/`nbf`/`iat` are checked with `leeway`; `iss` and `aud` exactly; every
//!    `required_claims` member present. An `aud` in a token that the verifier has no audience for is
//!    rejected (RFC 7519 §4.1.3), as PyJWT does.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::algorithm::Algorithm;
use super::json::parse_object;
use super::jwks::RemoteJwks;
use super::keys::Key;
use super::keyset::KeySet;
use crate::error::{Error, ErrorKind, Result};

/// What the verifier checks besides the signature.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Algorithms a token may use; never empty.
    pub algorithms: Vec<Algorithm>,
    /// Accepted audiences: the token's `aud` must contain one of them.
    pub audience: Option<Vec<String>>,
    /// Accepted issuers: the token's `iss` must be one of them.
    pub issuer: Option<Vec<String>>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: f64,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Larger tokens are rejected before they are decoded.
    pub max_token_bytes: usize,
}

impl VerifierConfig {
    /// Validates the configuration.
    pub fn validate(&self) -> Result<()> {
        if self.algorithms.is_empty() {
            return Err(Error::config("algorithms must name at least one algorithm"));
        }
        if !(self.leeway.is_finite() && self.leeway >= 0.0) {
            return Err(Error::config("leeway must be a non-negative number of seconds"));
        }
        if self.max_token_bytes < 16 {
            return Err(Error::config("max_token_bytes is too small"));
        }
        Ok(())
    }
}

/// The time claims of a verified token (seconds since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeClaims {
    /// `exp`.
    pub exp: Option<f64>,
    /// `nbf`.
    pub nbf: Option<f64>,
    /// `iat`.
    pub iat: Option<f64>,
}

impl TimeClaims {
    /// From verified claims (their numbers were checked; anything else reads as absent).
    pub fn of(claims: &Map<String, Value>) -> TimeClaims {
        let n = |k: &str| claims.get(k).and_then(Value::as_f64);
        TimeClaims {
            exp: n("exp"),
            nbf: n("nbf"),
            iat: n("iat"),
        }
    }
}

/// Where the verifier's keys come from.
enum KeySource {
    Static(KeySet),
    Remote(Arc<RemoteJwks>),
}

/// A configured verifier: keys parsed and configuration checked once, then immutable.
pub struct JwtVerifier {
    config: VerifierConfig,
    keys: KeySource,
}

fn malformed(msg: impl Into<String>) -> Error {
    Error::downstream(ErrorKind::TokenMalformed, msg.into())
}

fn claim_err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::downstream(kind, msg.into())
}

/// Decodes a base64url segment strictly: no padding, no `+`/`/`, no whitespace, canonical bits.
fn b64(segment: &[u8], what: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed(format!("{what} is not canonical base64url")))
}

impl JwtVerifier {
    /// A verifier with fixed keys. Every key must fit every configured algorithm's family, unless
    /// the keys come from a key set (then each key is only used with the algorithms it fits).
    pub fn new(config: VerifierConfig, keys: KeySet, from_set: bool) -> Result<Self> {
        config.validate()?;
        if keys.is_empty() {
            return Err(Error::config("no key given: pass key, jwks or jwks_url"));
        }
        check_keys(&config, &keys, from_set)?;
        Ok(JwtVerifier {
            config,
            keys: KeySource::Static(keys),
        })
    }

    /// A verifier whose keys come from a remote JWK Set.
    pub fn remote(config: VerifierConfig, jwks: Arc<RemoteJwks>) -> Result<Self> {
        config.validate()?;
        check_keys(&config, &jwks.current(), true)?;
        Ok(JwtVerifier {
            config,
            keys: KeySource::Remote(jwks),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The remote key set, if the keys come from a URL.
    pub fn remote_jwks(&self) -> Option<&Arc<RemoteJwks>> {
        match &self.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Static(_) => None,
        }
    }

    /// Verifies `token` at time `now` (seconds since the epoch); returns the claims.
    ///
    /// With a remote key set, an unknown `kid` triggers one rate-limited refresh (blocking the
    /// calling thread up to the fetch timeout) and a retry. Call it off the async runtime.
    pub fn verify(&self, token: &[u8], now: f64) -> Result<Map<String, Value>> {
        match &self.keys {
            KeySource::Static(keys) => self.verify_with(keys, token, now),
            KeySource::Remote(remote) => {
                let keys = remote.current();
                match self.verify_with(&keys, token, now) {
                    Err(e) if e.kind == ErrorKind::TokenKeyNotFound && remote.refresh_blocking() => {
                        self.verify_with(&remote.current(), token, now)
                    }
                    r => r,
                }
            }
        }
    }

    /// Verifies against the keys at hand, without any refresh (safe on the async runtime).
    pub fn verify_now(&self, token: &[u8], now: f64) -> Result<Map<String, Value>> {
        match &self.keys {
            KeySource::Static(keys) => self.verify_with(keys, token, now),
            KeySource::Remote(remote) => self.verify_with(&remote.current(), token, now),
        }
    }

    fn verify_with(&self, keys: &KeySet, token: &[u8], now: f64) -> Result<Map<String, Value>> {
        if token.len() > self.config.max_token_bytes {
            return Err(Error::downstream(
                ErrorKind::TokenTooLarge,
                format!(
                    "token is {} bytes; the limit is {}",
                    token.len(),
                    self.config.max_token_bytes
                ),
            ));
        }
        let mut parts = token.split(|&b| b == b'.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            let n = token.split(|&b| b == b'.').count();
            return Err(malformed(format!("token has {n} segments; a JWS has 3")));
        };
        let header = parse_object(&b64(h64, "header")?).map_err(|e| malformed(format!("header: {e}")))?;
        let alg = self.check_header(&header)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(malformed("header kid must be a string")),
        };
        let key = keys.select(kid)?;
        let signature = b64(s64, "signature")?;
        let signing_input = &token[..h64.len() + 1 + p64.len()];
        key.verify(alg, signing_input, &signature)?;
        let claims = parse_object(&b64(p64, "payload")?).map_err(|e| malformed(format!("payload: {e}")))?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_header(&self, header: &Map<String, Value>) -> Result<Algorithm> {
        let alg_name = match header.get("alg") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(claim_err(ErrorKind::TokenAlgorithm, "header alg must be a string")),
            None => return Err(claim_err(ErrorKind::TokenAlgorithm, "header has no alg")),
        };
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(claim_err(ErrorKind::TokenAlgorithm, "alg none is never accepted"));
        }
        let alg = Algorithm::from_name(alg_name)
            .ok_or_else(|| claim_err(ErrorKind::TokenAlgorithm, format!("unsupported alg {alg_name:?}")))?;
        if !self.config.algorithms.contains(&alg) {
            return Err(claim_err(
                ErrorKind::TokenAlgorithm,
                format!("alg {alg_name} is not allowed"),
            ));
        }
        match header.get("crit") {
            None => {}
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(claim_err(ErrorKind::TokenInvalidClaim, "header crit is empty"));
            }
            Some(Value::Array(a)) => {
                let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                return Err(claim_err(
                    ErrorKind::TokenInvalidClaim,
                    format!("unsupported critical header parameter(s) {names:?}"),
                ));
            }
            Some(_) => return Err(claim_err(ErrorKind::TokenInvalidClaim, "header crit must be an array")),
        }
        Ok(alg)
    }

    /// Checks a token's time claims against the clock (`now`, with the leeway): what a cached
    /// verification re-checks on every use.
    pub fn check_times(&self, t: &TimeClaims, now: f64) -> Result<()> {
        let leeway = self.config.leeway;
        if t.exp.is_some_and(|exp| now - leeway >= exp) {
            return Err(claim_err(ErrorKind::TokenExpired, "token has expired"));
        }
        if t.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(claim_err(ErrorKind::TokenImmature, "token is not valid yet (nbf)"));
        }
        if t.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(claim_err(
                ErrorKind::TokenImmature,
                "token was issued in the future (iat)",
            ));
        }
        Ok(())
    }

    /// Identifies the keys in use: constant for fixed keys; for a remote JWK Set it changes when
    /// a refresh brings different keys. Read it before verifying and keep it with a cached result.
    pub fn key_generation(&self) -> u64 {
        match &self.keys {
            KeySource::Static(_) => 0,
            KeySource::Remote(r) => r.generation(),
        }
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: f64) -> Result<()> {
        let c = &self.config;
        let number = |name: &str| -> Result<Option<f64>> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(_) => Err(claim_err(
                    ErrorKind::TokenInvalidClaim,
                    format!("{name} must be a number"),
                )),
            }
        };
        for name in &c.required_claims {
            if !claims.contains_key(name) {
                return Err(claim_err(
                    ErrorKind::TokenMissingClaim,
                    format!("token has no {name} claim"),
                ));
            }
        }
        let times = TimeClaims {
            exp: number("exp")?,
            nbf: number("nbf")?,
            iat: number("iat")?,
        };
        self.check_times(&times, now)?;
        if let Some(issuers) = &c.issuer {
            match claims.get("iss") {
                None => return Err(claim_err(ErrorKind::TokenMissingClaim, "token has no iss claim")),
                Some(Value::String(s)) if issuers.iter().any(|i| i == s) => {}
                Some(_) => return Err(claim_err(ErrorKind::TokenIssuer, "iss is not an accepted issuer")),
            }
        }
        match (&c.audience, claims.get("aud")) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(claim_err(
                    ErrorKind::TokenAudience,
                    "token has aud but no audience is configured",
                ));
            }
            (Some(_), None) => return Err(claim_err(ErrorKind::TokenMissingClaim, "token has no aud claim")),
            (Some(expected), Some(aud)) => {
                let ok = match aud {
                    Value::String(s) => expected.iter().any(|e| e == s),
                    Value::Array(items) => {
                        if items.iter().any(|v| !v.is_string()) {
                            return Err(claim_err(ErrorKind::TokenAudience, "aud must be a string or strings"));
                        }
                        items
                            .iter()
                            .any(|v| expected.iter().any(|e| Some(e.as_str()) == v.as_str()))
                    }
                    _ => return Err(claim_err(ErrorKind::TokenAudience, "aud must be a string or strings")),
                };
                if !ok {
                    return Err(claim_err(
                        ErrorKind::TokenAudience,
                        "aud does not contain an accepted audience",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_keys(config: &VerifierConfig, keys: &KeySet, from_set: bool) -> Result<()> {
    for key in keys.iter() {
        let usable: Vec<Algorithm> = config.algorithms.iter().copied().filter(|&a| key.allows(a)).collect();
        if from_set {
            // Each key is checked only against the algorithms it can serve (HMAC secret length).
            for a in usable {
                key.check_config(a)?;
            }
        } else {
            for &a in &config.algorithms {
                key.check_config(a)?;
            }
        }
    }
    Ok(())
}

/// `verify_signature(alg, key, message, signature)`: the verifier's own signature path, on its own.
pub fn verify_signature(alg: &str, key: &Key, message: &[u8], signature: &[u8]) -> Result<bool> {
    let alg = Algorithm::from_name(alg).ok_or_else(|| Error::config(format!("unsupported algorithm {alg:?}")))?;
    match key.verify(alg, message, signature) {
        Ok(()) => Ok(true),
        Err(e) if e.kind == ErrorKind::TokenSignature => Ok(false),
        Err(e) => Err(Error::config(e.context)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::hmac;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token(header: &str, payload: &str) -> Vec<u8> {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(payload);
        let input = format!("{h}.{p}");
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())).into_bytes()
    }

    fn verifier(audience: Option<&str>) -> JwtVerifier {
        let config = VerifierConfig {
            algorithms: vec![Algorithm::HS256],
            audience: audience.map(|a| vec![a.to_owned()]),
            issuer: Some(vec!["iss".into()]),
            leeway: 5.0,
            required_claims: vec!["exp".into()],
            max_token_bytes: 8192,
        };
        JwtVerifier::new(config, KeySet::single(Key::hmac(SECRET).unwrap()), false).unwrap()
    }

    fn kind(v: &JwtVerifier, t: &[u8]) -> ErrorKind {
        v.verify(t, 1000.0).unwrap_err().kind
    }

    #[test]
    fn accepts_a_good_token() {
        let v = verifier(Some("api"));
        let t = token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"exp":2000,"iss":"iss","aud":["x","api"],"sub":"u1"}"#,
        );
        assert_eq!(v.verify(&t, 1000.0).unwrap()["sub"], "u1");
    }

    #[test]
    fn claims_are_checked_with_leeway() {
        let v = verifier(None);
        let t = |p: &str| token(r#"{"alg":"HS256"}"#, p);
        assert_eq!(kind(&v, &t(r#"{"exp":990,"iss":"iss"}"#)), ErrorKind::TokenExpired);
        assert!(
            v.verify(&t(r#"{"exp":998,"iss":"iss"}"#), 1000.0).is_ok(),
            "within leeway"
        );
        assert_eq!(
            kind(&v, &t(r#"{"exp":2000,"nbf":1010,"iss":"iss"}"#)),
            ErrorKind::TokenImmature
        );
        assert_eq!(
            kind(&v, &t(r#"{"exp":2000,"iat":1010,"iss":"iss"}"#)),
            ErrorKind::TokenImmature
        );
        assert_eq!(
            kind(&v, &t(r#"{"exp":"2000","iss":"iss"}"#)),
            ErrorKind::TokenInvalidClaim
        );
        assert_eq!(
            kind(&v, &t(r#"{"exp":null,"iss":"iss"}"#)),
            ErrorKind::TokenInvalidClaim
        );
        assert_eq!(
            kind(&v, &t(r#"{"exp":2000,"nbf":true,"iss":"iss"}"#)),
            ErrorKind::TokenInvalidClaim
        );
        assert_eq!(kind(&v, &t(r#"{"iss":"iss"}"#)), ErrorKind::TokenMissingClaim);
        assert_eq!(kind(&v, &t(r#"{"exp":2000,"iss":"other"}"#)), ErrorKind::TokenIssuer);
        assert_eq!(
            kind(&v, &t(r#"{"exp":2000,"iss":"iss","aud":"x"}"#)),
            ErrorKind::TokenAudience
        );
    }

    #[test]
    fn header_rules() {
        let v = verifier(None);
        let p = r#"{"exp":2000,"iss":"iss"}"#;
        assert_eq!(kind(&v, &token(r#"{"alg":"none"}"#, p)), ErrorKind::TokenAlgorithm);
        assert_eq!(kind(&v, &token(r#"{"alg":"NoNe"}"#, p)), ErrorKind::TokenAlgorithm);
        assert_eq!(kind(&v, &token(r#"{"alg":"HS512"}"#, p)), ErrorKind::TokenAlgorithm);
        assert_eq!(
            kind(&v, &token(r#"{"alg":"HS256","crit":[]}"#, p)),
            ErrorKind::TokenInvalidClaim
        );
        assert_eq!(
            kind(&v, &token(r#"{"alg":"HS256","crit":["exp"]}"#, p)),
            ErrorKind::TokenInvalidClaim
        );
        assert_eq!(
            kind(&v, &token(r#"{"alg":"HS256","alg":"HS256"}"#, p)),
            ErrorKind::TokenMalformed
        );
        assert_eq!(kind(&v, &token(r#"[1]"#, p)), ErrorKind::TokenMalformed);
        assert_eq!(
            kind(&v, &token(r#"{"alg":"HS256"}"#, r#"{"exp":1,"exp":2000}"#)),
            ErrorKind::TokenMalformed
        );
        assert_eq!(kind(&v, &token(r#"{"alg":"HS256"}"#, "[]")), ErrorKind::TokenMalformed);
    }

    #[test]
    fn encoding_rules() {
        let v = verifier(None);
        let good = token(r#"{"alg":"HS256"}"#, r#"{"exp":2000,"iss":"iss"}"#);
        assert!(v.verify(&good, 1000.0).is_ok());
        let s = String::from_utf8(good.clone()).unwrap();
        assert_eq!(kind(&v, format!("{s}=").as_bytes()), ErrorKind::TokenMalformed);
        assert_eq!(kind(&v, format!("{s}.x").as_bytes()), ErrorKind::TokenMalformed);
        assert_eq!(kind(&v, format!(" {s}").as_bytes()), ErrorKind::TokenMalformed);
        // Properly signed tokens whose payload segment is padded, uses '+'/'/' or holds whitespace.
        let signed = |h: &str, p: &str| {
            let input = format!("{h}.{p}");
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())).into_bytes()
        };
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(r#"{"exp":2000,"iss":"iss","x":"??>"}"#);
        assert!(v.verify(&signed(&h, &p), 1000.0).is_ok());
        for bad in [
            format!("{p}="),
            p.replace('-', "+").replace('_', "/"),
            format!("{} {}", &p[..4], &p[4..]),
        ] {
            if bad != p {
                assert_eq!(kind(&v, &signed(&h, &bad)), ErrorKind::TokenMalformed, "{bad}");
            }
        }
        let big = vec![b'a'; 9000];
        assert_eq!(kind(&v, &big), ErrorKind::TokenTooLarge);
        // Flip the last signature char to a non-canonical variant with the same decoded bytes.
        let mut t = good.clone();
        let last = t.last_mut().unwrap();
        *last = match *last {
            b'A' => b'B',
            c => c - 1,
        };
        assert!(matches!(
            kind(&v, &t),
            ErrorKind::TokenMalformed | ErrorKind::TokenSignature
        ));
    }
}
