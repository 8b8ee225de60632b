//! The JWT/JWS decoder: base64url, JSON (duplicate members), the header rules, the claims, and
//! the key parsers (PEM, SPKI DER, JWK, JWKS).
//!
//! Input: one mode byte, then a header and a payload separated by a 0xFF byte.
//! - mode 0: header and payload are JSON, encoded canonically and signed with the right key, so
//!   the fuzzer reaches the claim checks with a valid signature;
//! - mode 1: header and payload are the token's segments as given (non-canonical base64,
//!   padding, stray dots), signed with the right key;
//! - mode 2: the whole rest is the token (forgery attempts), and is also fed to every key parser.
//!
//! The oracle: a token the verifier accepts must pass a strict reading written here
//! independently (canonical base64url, JSON objects without duplicate members at any depth, `alg`
//! exactly one of the allowed names, no `crit`, an HMAC that matches, `exp` in the future, `nbf`
//! and `iat` not in the future, `iss` and `aud` as configured). Nothing may panic.
#![no_main]

use std::fmt;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edgecore_core::auth::{Algorithm, JwtVerifier, Key, KeySet, VerifierConfig};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

const SECRET: &[u8] = b"edgecore-fuzz-secret-0123456789abcdef-0123456789abcdef-0123456789";
const NOW: f64 = 1_700_000_000.0;
const LEEWAY: f64 = 5.0;

/// Whether a JSON text has a repeated member name in any object (an independent check).
struct Dups;

impl<'de> Visitor<'de> for Dups {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut dup = false;
        while let Some(d) = seq.next_element_seed(DupSeed)? {
            dup |= d;
        }
        Ok(dup)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut dup = false;
        while let Some(k) = map.next_key::<String>()? {
            dup |= !seen.insert(k);
            dup |= map.next_value_seed(DupSeed)?;
        }
        Ok(dup)
    }
}

struct DupSeed;

impl<'de> serde::de::DeserializeSeed<'de> for DupSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Dups)
    }
}

/// A strict, independent reading of one segment as a JSON object.
fn strict_object(segment: &[u8]) -> serde_json::Map<String, Value> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .expect("accepted a segment that is not base64url");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&bytes).as_bytes(),
        segment,
        "accepted non-canonical base64url"
    );
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let dup = de.deserialize_any(Dups).expect("accepted invalid JSON");
    assert!(!dup, "accepted a duplicate member");
    match serde_json::from_slice(&bytes).unwrap() {
        Value::Object(m) => m,
        _ => panic!("accepted a segment that is not an object"),
    }
}

fn number(claims: &serde_json::Map<String, Value>, name: &str) -> Option<f64> {
    claims
        .get(name)
        .map(|v| v.as_f64().unwrap_or_else(|| panic!("accepted a non-numeric {name}")))
}

fn assert_strictly_valid(token: &[u8]) {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    assert_eq!(parts.len(), 3, "accepted a token with {} segments", parts.len());
    let header = strict_object(parts[0]);
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .expect("accepted a header without alg");
    let mac = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        other => panic!("accepted alg {other:?}"),
    };
    assert!(!header.contains_key("crit"), "accepted crit");
    assert!(
        header.get("kid").is_none_or(Value::is_string),
        "accepted a non-string kid"
    );
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .expect("accepted a bad signature segment");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&signature).as_bytes(),
        parts[2],
        "non-canonical signature"
    );
    let input = &token[..parts[0].len() + 1 + parts[1].len()];
    hmac::verify(&hmac::Key::new(mac, SECRET), input, &signature).expect("accepted a bad signature");
    let claims = strict_object(parts[1]);
    let exp = number(&claims, "exp").expect("accepted a token without exp");
    assert!(NOW - LEEWAY < exp, "accepted an expired token");
    assert!(
        number(&claims, "nbf").is_none_or(|n| n <= NOW + LEEWAY),
        "accepted nbf in the future"
    );
    assert!(
        number(&claims, "iat").is_none_or(|n| n <= NOW + LEEWAY),
        "accepted iat in the future"
    );
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some("https://issuer.example")
    );
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => s == "api",
        Some(Value::Array(a)) => a.iter().all(Value::is_string) && a.iter().any(|v| v == "api"),
        _ => false,
    };
    assert!(aud_ok, "accepted aud {:?}", claims.get("aud"));
}

fn verifier() -> JwtVerifier {
    let config = VerifierConfig {
        algorithms: vec![Algorithm::HS256, Algorithm::HS384],
        audience: Some(vec!["api".into()]),
        issuer: Some(vec!["https://issuer.example".into()]),
        leeway: LEEWAY,
        required_claims: vec!["exp".into()],
        max_token_bytes: 8192,
    };
    JwtVerifier::new(config, KeySet::single(Key::hmac(SECRET).unwrap()), false).unwrap()
}

fn sign(alg_hint: &[u8], input: &[u8]) -> String {
    let mac = if alg_hint.windows(5).any(|w| w == b"HS384") {
        hmac::HMAC_SHA384
    } else {
        hmac::HMAC_SHA256
    };
    URL_SAFE_NO_PAD.encode(hmac::sign(&hmac::Key::new(mac, SECRET), input).as_ref())
}

fn key_parsers(data: &[u8]) {
    let _ = Key::from_spki(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Key::from_pem(text);
    }
    if let Ok(Value::Object(jwk)) = serde_json::from_slice::<Value>(data) {
        let _ = Key::from_jwk(&jwk);
        let _ = KeySet::from_jwks(&jwk);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (head, payload) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let token: Vec<u8> = match mode % 3 {
        0 => {
            let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(head), URL_SAFE_NO_PAD.encode(payload));
            format!("{input}.{}", sign(head, input.as_bytes())).into_bytes()
        }
        1 => {
            let mut input = head.to_vec();
            input.push(b'.');
            input.extend_from_slice(payload);
            let sig = sign(&URL_SAFE_NO_PAD.decode(head).unwrap_or_default(), &input);
            input.push(b'.');
            input.extend_from_slice(sig.as_bytes());
            input
        }
        _ => {
            key_parsers(rest);
            rest.to_vec()
        }
    };
    thread_local!(static VERIFIER: JwtVerifier = verifier());
    VERIFIER.with(|v| {
        if v.verify(&token, NOW).is_ok() {
            assert_strictly_valid(&token);
        }
    });
});
