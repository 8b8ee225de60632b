//! Python adapters for JWT: `JWTVerifier` and `verify_signature`.
//!
//! How a `key` argument is read depends on the algorithms, never on guessing: with HMAC algorithms
//! a str/bytes key is the secret; with public-key algorithms it is PEM (or DER bytes). A dict is a
//! JWK, or a JWK Set when it has "keys". PEM text given with HMAC algorithms is refused (the
//! HS256-with-a-public-key confusion), as PyJWT does.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgecore_core::auth::jwks::{JwksTiming, RemoteJwks};
use edgecore_core::auth::{self, Algorithm, JwtVerifier, Key, KeySet, VerifierConfig};
use edgecore_core::Error;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::convert::{json_map_to_py, py_to_json};
use crate::errors::{config_error, CoreError};

/// Seconds since the epoch, as the verifier's default clock.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn key_bytes(key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = key.cast::<PyString>() {
        Ok(s.to_str()?.as_bytes().to_vec())
    } else if let Ok(b) = key.cast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else {
        Err(PyTypeError::new_err("key must be str, bytes or a JWK dict"))
    }
}

fn json_object(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<serde_json::Map<String, serde_json::Value>> {
    match py_to_json(obj)? {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(config_error(format!("{what} must be a JSON object (dict)"))),
    }
}

/// Reads a key for `hmac` (true: HMAC algorithms) — see the module doc.
fn parse_key(key: &Bound<'_, PyAny>, hmac: bool) -> PyResult<KeySet> {
    if key.is_instance_of::<PyDict>() {
        let map = json_object(key, "key")?;
        let set = if map.contains_key("keys") {
            KeySet::from_jwks(&map)
        } else {
            Key::from_jwk(&map).map(KeySet::single)
        };
        return Ok(set.map_err(CoreError)?);
    }
    let bytes = key_bytes(key)?;
    let looks_pem = bytes.trim_ascii_start().starts_with(b"-----BEGIN");
    let parsed = if looks_pem {
        let text = std::str::from_utf8(&bytes).map_err(|_| config_error("PEM key is not valid text"))?;
        Key::from_pem(text)
    } else if hmac {
        Key::hmac(&bytes)
    } else {
        Key::from_spki(&bytes)
    };
    Ok(KeySet::single(parsed.map_err(CoreError)?))
}

fn parse_algorithms(names: Vec<String>) -> PyResult<Vec<Algorithm>> {
    names
        .iter()
        .map(|n| {
            if n.eq_ignore_ascii_case("none") {
                return Err(config_error("algorithm none is never allowed"));
            }
            Algorithm::from_name(n).ok_or_else(|| {
                config_error(format!(
                    "unsupported algorithm {n:?}; expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"
                ))
            })
        })
        .collect()
}

fn str_list(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Vec<String>>> {
    let Some(obj) = obj else { return Ok(None) };
    if obj.is_none() {
        return Ok(None);
    }
    if let Ok(s) = obj.extract::<String>() {
        return Ok(Some(vec![s]));
    }
    obj.extract::<Vec<String>>()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str or a list of str")))
}

/// Verifies JWTs (JWS compact serialization) with keys parsed once, at construction.
#[pyclass(frozen, module = "edgecore._core", name = "JWTVerifier")]
pub struct PyJWTVerifier {
    pub(crate) inner: Arc<JwtVerifier>,
    /// Whether verification may be slow enough (public-key crypto, a JWKS refresh) to detach.
    detach: bool,
    repr: String,
}

#[pymethods]
impl PyJWTVerifier {
    #[new]
    #[pyo3(signature = (
        key=None, *, algorithms, audience=None, issuer=None, leeway=0.0, required_claims=vec!["exp".to_owned()],
        jwks=None, jwks_url=None, max_token_bytes=8192, jwks_refresh=300.0, jwks_min_interval=10.0, jwks_timeout=5.0,
        jwks_strict=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        algorithms: Vec<String>,
        audience: Option<&Bound<'_, PyAny>>,
        issuer: Option<&Bound<'_, PyAny>>,
        leeway: f64,
        required_claims: Vec<String>,
        jwks: Option<&Bound<'_, PyAny>>,
        jwks_url: Option<String>,
        max_token_bytes: usize,
        jwks_refresh: f64,
        jwks_min_interval: f64,
        jwks_timeout: f64,
        jwks_strict: bool,
    ) -> PyResult<Self> {
        let algs = parse_algorithms(algorithms)?;
        let config = VerifierConfig {
            algorithms: algs.clone(),
            audience: str_list(audience, "audience")?,
            issuer: str_list(issuer, "issuer")?,
            leeway,
            required_claims,
            max_token_bytes,
        };
        let sources = [key.is_some(), jwks.is_some(), jwks_url.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if sources != 1 {
            return Err(config_error("pass exactly one of key, jwks and jwks_url"));
        }
        let all_hmac = algs.iter().all(|a| a.is_hmac());
        let any_hmac = algs.iter().any(|a| a.is_hmac());
        let inner = if let Some(url) = &jwks_url {
            let duration = |s: f64, what: &str| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| config_error(format!("{what} must be a positive number of seconds")))
            };
            let timing = JwksTiming {
                refresh_interval: duration(jwks_refresh, "jwks_refresh")?,
                min_interval: duration(jwks_min_interval, "jwks_min_interval")?,
                timeout: duration(jwks_timeout, "jwks_timeout")?,
            };
            let url = url.clone();
            let remote = py
                .detach(|| RemoteJwks::start(&url, timing, jwks_strict))
                .map_err(CoreError)?;
            JwtVerifier::remote(config, remote).map_err(CoreError)?
        } else if let Some(set) = jwks {
            let keys = KeySet::from_jwks(&json_object(set, "jwks")?).map_err(CoreError)?;
            JwtVerifier::new(config, keys, true).map_err(CoreError)?
        } else {
            let key = key.expect("one source");
            if any_hmac && !all_hmac && !key.is_instance_of::<PyDict>() {
                return Err(config_error(
                    "algorithms mix HMAC and public-key algorithms for one key; use one family per verifier",
                ));
            }
            let from_set = key.is_instance_of::<PyDict>() && key.cast::<PyDict>()?.contains("keys")?;
            JwtVerifier::new(config, parse_key(key, all_hmac)?, from_set).map_err(CoreError)?
        };
        let c = inner.config();
        let repr = format!(
            "JWTVerifier(algorithms={:?}, audience={:?}, issuer={:?}, leeway={}, required_claims={:?}, source={})",
            c.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
            c.audience,
            c.issuer,
            c.leeway,
            c.required_claims,
            jwks_url
                .as_deref()
                .map(|u| format!("jwks_url={u:?}"))
                .unwrap_or_else(|| "static".into()),
        );
        Ok(PyJWTVerifier {
            inner: Arc::new(inner),
            detach: !all_hmac || jwks_url.is_some(),
            repr,
        })
    }

    /// Verifies `token` and returns its claims; raises a `JWTError` subclass saying why not.
    /// `now` (seconds since the epoch) replaces the clock, for tests.
    #[pyo3(signature = (token, *, now=None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'py, PyAny>,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let t = now.unwrap_or_else(self::now);
        let claims = if let Ok(s) = token.cast::<PyString>() {
            let s = s.to_str()?;
            if self.detach {
                py.detach(|| self.inner.verify(s.as_bytes(), t))
            } else {
                self.inner.verify(s.as_bytes(), t)
            }
        } else if let Ok(b) = token.cast::<PyBytes>() {
            let b = b.as_bytes();
            if self.detach {
                py.detach(|| self.inner.verify(b, t))
            } else {
                self.inner.verify(b, t)
            }
        } else {
            return Err(PyTypeError::new_err("token must be str or bytes"));
        }
        .map_err(CoreError)?;
        json_map_to_py(py, &claims)
    }

    /// (fetches, failures) of the remote key set, or None without jwks_url.
    fn jwks_stats(&self) -> Option<(u64, u64)> {
        self.inner.remote_jwks().map(|r| r.stats())
    }

    fn __repr__(&self) -> &str {
        &self.repr
    }
}

/// Verifies one JWS signature with the verifier's own code path. `key` is read as for
/// JWTVerifier with this one algorithm (HMAC secret, PEM, DER SubjectPublicKeyInfo or a JWK).
#[pyfunction]
pub fn verify_signature(
    py: Python<'_>,
    alg: &str,
    key: &Bound<'_, PyAny>,
    message: &[u8],
    signature: &[u8],
) -> PyResult<bool> {
    let a = Algorithm::from_name(alg).ok_or_else(|| config_error(format!("unsupported algorithm {alg:?}")))?;
    let set = parse_key(key, a.is_hmac())?;
    let key = set.iter().next().ok_or_else(|| CoreError(Error::config("no key")))?;
    py.detach(|| auth::verify_signature(alg, key, message, signature))
        .map_err(|e| CoreError(e).into())
}

/// Benchmark helper: seconds per raw backend verification (key parsed once, no JWT work).
#[pyfunction]
pub fn _raw_verify_seconds(
    py: Python<'_>,
    alg: &str,
    key: &Bound<'_, PyAny>,
    message: &[u8],
    signature: &[u8],
    iterations: u32,
) -> PyResult<f64> {
    let a = Algorithm::from_name(alg).ok_or_else(|| config_error(format!("unsupported algorithm {alg:?}")))?;
    let set = parse_key(key, a.is_hmac())?;
    let key = set.iter().next().ok_or_else(|| CoreError(Error::config("no key")))?;
    Ok(py.detach(|| key.raw_verify_seconds(a, message, signature, iterations)))
}
