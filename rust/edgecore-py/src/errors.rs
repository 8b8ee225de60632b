//! The Python exception tree and the one mapping from the core error to it.
//!
//! `create_exception!` allows a single base, but the contract needs `JWTError` to be both an
//! `EdgeError` and a `ValueError` (the caller's input is at fault), as orjson's `JSONDecodeError`
//! is both a `ValueError` and a `json.JSONDecodeError`. So the classes are made once at import
//! with `type(name, bases, ns)` and kept in a `PyOnceLock`.

use edgecore_core::{Error, ErrorKind};
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// Declares the exception classes: (name, parents by name — "ValueError" means the builtin, doc).
const TREE: &[(&str, &[&str], &str)] = &[
    ("EdgeError", &["Exception"], "Base class of every edgecore exception."),
    (
        "ConfigError",
        &["EdgeError", "ValueError"],
        "A configuration value (key, path, limit, pattern) is invalid.",
    ),
    (
        "StoreError",
        &["EdgeError"],
        "A state store (Redis) is unreachable or misbehaved.",
    ),
    (
        "UpstreamError",
        &["EdgeError"],
        "The origin refused the connection, failed or timed out.",
    ),
    (
        "HTTPParseError",
        &["EdgeError", "ValueError"],
        "The request is malformed; `.status` is the HTTP status a server answers with.",
    ),
    (
        "IncompleteRequest",
        &["HTTPParseError"],
        "The bytes so far are a valid prefix: read more and parse again.",
    ),
    (
        "JWTError",
        &["EdgeError", "ValueError"],
        "The token was rejected; subclasses say why.",
    ),
    (
        "MalformedTokenError",
        &["JWTError"],
        "Not a well-formed JWS: segments, base64url or JSON are invalid.",
    ),
    (
        "TokenTooLargeError",
        &["MalformedTokenError"],
        "The token is larger than max_token_bytes.",
    ),
    (
        "InvalidAlgorithmError",
        &["JWTError"],
        "The alg is none, not allowed, or does not fit the key.",
    ),
    ("KeyNotFoundError", &["JWTError"], "No key matches the token's kid."),
    ("InvalidSignatureError", &["JWTError"], "The signature does not verify."),
    ("ExpiredTokenError", &["JWTError"], "exp is in the past."),
    ("ImmatureTokenError", &["JWTError"], "nbf or iat is in the future."),
    (
        "InvalidAudienceError",
        &["JWTError"],
        "aud does not contain the expected audience.",
    ),
    ("InvalidIssuerError", &["JWTError"], "iss is not the expected issuer."),
    ("MissingClaimError", &["JWTError"], "A required claim is absent."),
    (
        "InvalidClaimError",
        &["JWTError"],
        "A claim or header field has the wrong type or value.",
    ),
];

struct Classes(Vec<(&'static str, Py<PyType>)>);

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn classes(py: Python<'_>) -> &Classes {
    CLASSES.get_or_init(py, || build(py).expect("creating the edgecore exception classes"))
}

fn build(py: Python<'_>) -> PyResult<Classes> {
    let builtins = py.import("builtins")?;
    let type_ = builtins.getattr("type")?;
    let mut made: Vec<(&'static str, Py<PyType>)> = Vec::new();
    for (name, parents, doc) in TREE {
        let mut bases = Vec::new();
        for p in *parents {
            let base: Bound<'_, PyAny> = match *p {
                "Exception" => py.get_type::<PyException>().into_any(),
                "ValueError" => py.get_type::<PyValueError>().into_any(),
                other => made
                    .iter()
                    .find(|(n, _)| *n == other)
                    .unwrap()
                    .1
                    .bind(py)
                    .clone()
                    .into_any(),
            };
            bases.push(base);
        }
        let ns = PyDict::new(py);
        ns.set_item("__module__", "edgecore._core")?;
        ns.set_item("__doc__", *doc)?;
        let cls = type_
            .call1((*name, PyTuple::new(py, bases)?, ns))?
            .cast_into::<PyType>()?;
        made.push((name, cls.unbind()));
    }
    Ok(Classes(made))
}

/// The exception class called `name` (one of [`TREE`]).
pub fn class<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyType> {
    classes(py)
        .0
        .iter()
        .find(|(n, _)| *n == name)
        .expect("known exception name")
        .1
        .bind(py)
        .clone()
}

/// Adds every exception class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    for (name, cls) in &classes(m.py()).0 {
        m.add(*name, cls.bind(m.py()))?;
    }
    Ok(())
}

/// The Python class for a core error kind.
fn class_name(kind: ErrorKind) -> &'static str {
    use ErrorKind::*;
    match kind {
        Incomplete => "IncompleteRequest",
        BadRequest | UriTooLong | HeadersTooLarge | BodyTooLarge | NotImplemented | MethodNotAllowed
        | MisdirectedRequest => "HTTPParseError",
        TokenMalformed => "MalformedTokenError",
        TokenTooLarge => "TokenTooLargeError",
        TokenAlgorithm => "InvalidAlgorithmError",
        TokenKeyNotFound => "KeyNotFoundError",
        TokenSignature => "InvalidSignatureError",
        TokenExpired => "ExpiredTokenError",
        TokenImmature => "ImmatureTokenError",
        TokenAudience => "InvalidAudienceError",
        TokenIssuer => "InvalidIssuerError",
        TokenMissingClaim => "MissingClaimError",
        TokenInvalidClaim => "InvalidClaimError",
        Config => "ConfigError",
        Store => "StoreError",
        Upstream | UpstreamTimeout => "UpstreamError",
        RateLimited | Internal | Overloaded => "EdgeError",
    }
}

/// Builds the Python exception for a core error; parse errors carry `.status`.
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let cls = class(py, class_name(err.kind));
    let status = err.http_status();
    match cls.call1((err.context.as_ref(),)) {
        Ok(exc) => {
            let _ = exc.setattr("status", status);
            PyErr::from_value(exc)
        }
        Err(e) => e,
    }
}

/// The one conversion from the core error to a Python exception.
pub struct CoreError(pub Error);

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        Python::attach(|py| to_pyerr(py, e.0))
    }
}

/// A `ConfigError` with `msg`, for validation done in the adapter (argument types).
pub fn config_error(msg: impl Into<String>) -> PyErr {
    CoreError(Error::config(msg.into())).into()
}

/// Result alias for adapter functions that return core errors.
pub type CoreResult<T> = Result<T, CoreError>;
