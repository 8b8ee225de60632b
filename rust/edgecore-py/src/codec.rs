//! `compress(data, algorithm, level)`: the edge's codecs, for handlers that store compressed
//! bytes and for the benchmarks.

use edgecore_core::compress::Coding;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::config_error;

/// `data` compressed with `algorithm` (`zstd`, `br` or `gzip`) at `level` (the edge's default
/// when None), as `app.compress` would; the GIL is released while it runs.
#[pyfunction]
#[pyo3(signature = (data, algorithm, level=None))]
pub fn compress<'py>(
    py: Python<'py>,
    data: &[u8],
    algorithm: &str,
    level: Option<i32>,
) -> PyResult<Bound<'py, PyBytes>> {
    let coding = Coding::parse(algorithm)
        .ok_or_else(|| config_error(format!("unknown algorithm {algorithm:?} (zstd, br or gzip)")))?;
    let level = level.unwrap_or(coding.default_level());
    if !coding.levels().contains(&level) {
        let r = coding.levels();
        return Err(config_error(format!(
            "{algorithm} takes levels {}..={}, not {level}",
            r.start(),
            r.end()
        )));
    }
    let out = py
        .detach(|| edgecore_core::compress::compress(coding, level, data))
        .map_err(|e| config_error(format!("compressing: {e}")))?;
    Ok(PyBytes::new(py, &out))
}
