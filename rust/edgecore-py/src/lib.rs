//! `edgecore._core`: the PyO3 extension. This file is the index of what Python sees; each
//! adapter module converts arguments, makes one call into `edgecore-core`, and converts back.

mod auth;
mod cache;
mod classify;
mod client_ip;
mod codec;
mod convert;
mod errors;
mod flow;
mod geo;
mod headers;
mod http;
mod kv;
mod limit;
mod server;

use pyo3::prelude::*;

/// The Rust core of edgecore.
#[pymodule]
mod _core {
    use super::*;

    // http
    #[pymodule_export]
    use crate::headers::PyHeaders;
    #[pymodule_export]
    use crate::http::{parse_request, parse_request_prefix, redirect, PyParserLimits, PyRequest, PyResponse, PyURL};

    // middleware decisions
    #[pymodule_export]
    use crate::flow::{next_, rewrite, PyNext};

    // auth
    #[pymodule_export]
    use crate::auth::{_raw_verify_seconds, verify_signature, PyJWTVerifier};

    // limit
    #[pymodule_export]
    use crate::limit::{PyDecision, PyRateLimiter};

    // kv
    #[pymodule_export]
    use crate::kv::PyKV;

    // cache
    #[pymodule_export]
    use crate::cache::{cache_key, cache_policy, PyCacheLookup, PyCachePolicy, PyHTTPCache, PyResponseCache};

    // server
    #[pymodule_export]
    use crate::server::{
        check_app, check_error_page, check_paths, check_settings, default_settings, publish_purge, PyPendingJob,
        PyServer,
    };

    // compression
    #[pymodule_export]
    use crate::codec::compress;

    // geo
    #[pymodule_export]
    use crate::client_ip::client_ip;
    #[pymodule_export]
    use crate::geo::{PyGeo, PyGeoDB};

    // classify
    #[pymodule_export]
    use crate::classify::{assign_variant, PyBotDetector, PyExperiment};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // errors
        errors::register(m)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
