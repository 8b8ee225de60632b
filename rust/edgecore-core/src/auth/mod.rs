//! JWT verification (RFC 7519 over RFC 7515 compact JWS), strict by default.
//!
//! - [`keys`]: key material (HMAC, RSA, EC, Ed25519) from secrets, PEM, JWK and JWK Sets.
//! - [`verifier`]: the token checks, in order: size, segments, header, key selection, signature,
//!   payload, claims.
//! - [`jwks`]: a JWK Set fetched from a URL, refreshed in the background and on unknown `kid`.
//! - [`token_cache`]: verified tokens, so a session's token is checked once, not per request.

mod algorithm;
mod claims;
mod der;
mod json;
pub mod jwks;
pub mod keys;
mod keyset;
pub mod token_cache;
pub mod verifier;

pub use algorithm::Algorithm;
pub use claims::claim_text;
pub use keys::{Key, KeyFamily};
pub use keyset::KeySet;
pub use token_cache::TokenCache;
pub use verifier::{verify_signature, JwtVerifier, TimeClaims, VerifierConfig};
