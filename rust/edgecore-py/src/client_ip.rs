//! Python adapter for the client-IP rule: `client_ip(peer, headers, trusted)`.

use edgecore_core::geo::TrustedProxies;
use pyo3::prelude::*;

use crate::errors::CoreError;
use crate::geo::parse_ip;

/// The client IP: `peer`, unless it is a trusted proxy; then the first untrusted address from the
/// right of X-Forwarded-For (nginx `real_ip_recursive`). IPv4-mapped IPv6 is normalised.
#[pyfunction]
#[pyo3(signature = (peer, headers=None, trusted=vec![]))]
pub fn client_ip(peer: &str, headers: Option<&Bound<'_, PyAny>>, trusted: Vec<String>) -> PyResult<String> {
    let peer = parse_ip(peer)?;
    let trusted = TrustedProxies::new(&trusted).map_err(CoreError)?;
    let map = crate::headers::headers_from_py(headers)?;
    let xff = map.get_all("x-forwarded-for").iter().map(|v| v.as_bytes());
    Ok(edgecore_core::geo::client_ip(peer, xff, &trusted).to_string())
}
