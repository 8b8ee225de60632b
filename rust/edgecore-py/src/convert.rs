//! Conversions between core values and Python objects that several adapters share.

use bytes::Bytes;
use edgecore_core::geo::Geo;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use serde_json::{Map, Value};

/// A JSON value as the Python object `json.loads` would give.
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                PyInt::new(py, i).into_any()
            } else if let Some(u) = n.as_u64() {
                PyInt::new(py, u).into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(m) => json_map_to_py(py, m)?.into_any(),
    })
}

/// A JSON object as a dict.
pub fn json_map_to_py<'py>(py: Python<'py>, m: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in m {
        d.set_item(PyString::new(py, k), json_to_py(py, v)?)?;
    }
    Ok(d)
}

/// A Python object (dict, list, str, int, float, bool, None) as a JSON value.
pub fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    let text = dumps_json(obj.py(), obj)?;
    serde_json::from_slice(&text)
        .map_err(|e| crate::errors::config_error(format!("value is not JSON-serializable: {e}")))
}

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Serializes with orjson (the json module when orjson is missing).
pub fn dumps_json(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let dumps = DUMPS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        match py.import("orjson") {
            Ok(m) => Ok(m.getattr("dumps")?.unbind()),
            Err(_) => Ok(py.import("edgecore._jsonfallback")?.getattr("dumps")?.unbind()),
        }
    })?;
    let out = dumps.bind(py).call1((obj,))?;
    Ok(Bytes::copy_from_slice(out.cast::<PyBytes>()?.as_bytes()))
}

/// A `Geo` record as the Python `Geo` class.
pub fn geo_to_py(py: Python<'_>, g: &Geo) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, crate::geo::PyGeo { inner: g.clone() })?.into_any())
}
