//! Python adapters for knowing where the client is: `Geo`, `GeoDB`.

use std::sync::Arc;

use edgecore_core::geo::{Geo, GeoDb};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyDict, PyFloat, PyInt, PyList, PyString};

use crate::errors::CoreError;

/// Where a client is: country, continent, region, city, postal code, coordinates, time zone, ASN.
#[pyclass(frozen, module = "edgecore._core", name = "Geo")]
pub struct PyGeo {
    pub(crate) inner: Geo,
}

#[pymethods]
impl PyGeo {
    /// ISO 3166-1 alpha-2 country code.
    #[getter]
    fn country(&self) -> Option<&str> {
        self.inner.country.as_deref()
    }
    /// Continent code.
    #[getter]
    fn continent(&self) -> Option<&str> {
        self.inner.continent.as_deref()
    }
    /// ISO code of the first subdivision.
    #[getter]
    fn region(&self) -> Option<&str> {
        self.inner.region.as_deref()
    }
    /// English city name.
    #[getter]
    fn city(&self) -> Option<&str> {
        self.inner.city.as_deref()
    }
    /// Postal code.
    #[getter]
    fn postal_code(&self) -> Option<&str> {
        self.inner.postal_code.as_deref()
    }
    /// Latitude.
    #[getter]
    fn latitude(&self) -> Option<f64> {
        self.inner.latitude
    }
    /// Longitude.
    #[getter]
    fn longitude(&self) -> Option<f64> {
        self.inner.longitude
    }
    /// IANA time zone.
    #[getter]
    fn timezone(&self) -> Option<&str> {
        self.inner.timezone.as_deref()
    }
    /// Autonomous system number.
    #[getter]
    fn asn(&self) -> Option<u32> {
        self.inner.asn
    }
    /// Autonomous system organisation.
    #[getter]
    fn organization(&self) -> Option<&str> {
        self.inner.organization.as_deref()
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyGeo>()
            .map(|o| o.get().inner == self.inner)
            .unwrap_or(false)
    }
    /// As Python writes the same value: `Geo(country='DE', ..., asn=None)`.
    fn __repr__(&self) -> String {
        fn text(v: &Option<String>) -> String {
            match v {
                None => "None".to_owned(),
                Some(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            }
        }
        fn num<T: std::fmt::Display>(v: Option<T>) -> String {
            v.map_or_else(|| "None".to_owned(), |n| n.to_string())
        }
        let g = &self.inner;
        format!(
            "Geo(country={}, continent={}, region={}, city={}, postal_code={}, latitude={}, longitude={}, \
             timezone={}, asn={}, organization={})",
            text(&g.country),
            text(&g.continent),
            text(&g.region),
            text(&g.city),
            text(&g.postal_code),
            num(g.latitude),
            num(g.longitude),
            text(&g.timezone),
            num(g.asn),
            text(&g.organization)
        )
    }
    /// The fields as a dict (for JSON).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let g = &self.inner;
        let d = PyDict::new(py);
        d.set_item("country", &g.country)?;
        d.set_item("continent", &g.continent)?;
        d.set_item("region", &g.region)?;
        d.set_item("city", &g.city)?;
        d.set_item("postal_code", &g.postal_code)?;
        d.set_item("latitude", g.latitude)?;
        d.set_item("longitude", g.longitude)?;
        d.set_item("timezone", &g.timezone)?;
        d.set_item("asn", g.asn)?;
        d.set_item("organization", &g.organization)?;
        Ok(d)
    }
}

/// Parses an IP address argument; a bad one is a ValueError naming it.
pub(crate) fn parse_ip(ip: &str) -> PyResult<std::net::IpAddr> {
    ip.trim().parse().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("{ip:?} does not appear to be an IPv4 or IPv6 address"))
    })
}

/// A MaxMind DB value decoded straight into a Python object, as the maxminddb package builds it
/// (maps to dict, arrays to list, bytes to bytearray, every integer type to int).
struct PyValue(Py<PyAny>);

/// The interpreter token inside decoding.
fn py_token() -> Python<'static> {
    // SAFETY: `PyValue` is only decoded by `PyGeoDB::get`, a #[pymethods] call that holds the
    // interpreter and does not detach; the decoder runs synchronously on that same thread
    // (`GeoDb::get_as` does not spawn), so the GIL is held whenever this is called.
    unsafe { Python::assume_attached() }
}

impl<'de> serde::Deserialize<'de> for PyValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn obj<T>(f: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, T>>) -> PyValue {
            let py = py_token();
            PyValue(f(py).map(|b| b.into_any().unbind()).unwrap_or_else(|_| py.None()))
        }
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PyValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a MaxMind DB value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyBool::new(py, v).to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyInt::new(py, v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyInt::new(py, v))))
            }
            fn visit_u128<E>(self, v: u128) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyInt::new(py, v))))
            }
            fn visit_f32<E>(self, v: f32) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyFloat::new(py, f64::from(v)))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyFloat::new(py, v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyString::new(py, v))))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<PyValue, E> {
                Ok(obj(|py| Ok(PyByteArray::new(py, v))))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PyValue, A::Error> {
                let mut items = Vec::new();
                while let Some(PyValue(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(obj(|py| PyList::new(py, items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PyValue, A::Error> {
                let py = py_token();
                let d = PyDict::new(py);
                while let Some(key) = map.next_key::<&'de str>()? {
                    let PyValue(v) = map.next_value()?;
                    d.set_item(PyString::new(py, key), v)
                        .map_err(serde::de::Error::custom)?;
                }
                Ok(PyValue(d.into_any().unbind()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A MaxMind DB (City, Country or ASN), memory-mapped, reloadable.
#[pyclass(frozen, module = "edgecore._core", name = "GeoDB")]
pub struct PyGeoDB {
    pub(crate) inner: Arc<GeoDb>,
}

#[pymethods]
impl PyGeoDB {
    #[new]
    fn new(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let db = py.detach(|| GeoDb::open(&path)).map_err(CoreError)?;
        Ok(PyGeoDB { inner: Arc::new(db) })
    }

    /// Geo data for `ip`, or None when the database has no record for it. (The server remembers
    /// the records of the client IPs it sees; this looks the database up every time.)
    fn lookup(&self, ip: &str) -> PyResult<Option<PyGeo>> {
        let ip = parse_ip(ip)?;
        Ok(self.inner.lookup(ip).map(|inner| PyGeo { inner }))
    }

    /// The full record for `ip`, as the maxminddb package returns it, or None.
    fn get<'py>(&self, py: Python<'py>, ip: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let ip = parse_ip(ip)?;
        Ok(self.inner.get_as::<PyValue>(ip).map(|v| v.0.into_bound(py)))
    }

    /// Re-opens the file and swaps it in atomically; a bad file raises ConfigError and the old
    /// database stays in use.
    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.reload()).map_err(|e| CoreError(e).into())
    }

    /// The database metadata (database_type, build_epoch, ip_version, node_count, languages, description).
    #[getter]
    fn metadata(&self) -> std::collections::BTreeMap<&'static str, String> {
        self.inner.metadata()
    }

    /// The file path.
    #[getter]
    fn path(&self) -> std::path::PathBuf {
        self.inner.path().to_path_buf()
    }

    fn __repr__(&self) -> String {
        format!("GeoDB({:?})", self.inner.path().display().to_string())
    }
}
