//! Python adapters for geo-IP: the `Geo` record.

use edgecore_core::geo::Geo;
use pyo3::prelude::*;

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
    fn __repr__(&self) -> String {
        let g = &self.inner;
        format!(
            "Geo(country={:?}, continent={:?}, region={:?}, city={:?}, postal_code={:?}, latitude={:?}, longitude={:?}, timezone={:?}, asn={:?}, organization={:?})",
            g.country, g.continent, g.region, g.city, g.postal_code, g.latitude, g.longitude, g.timezone, g.asn, g.organization
        )
    }
}
