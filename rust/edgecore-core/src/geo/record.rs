//! [`Geo`]: what the geo database knows about where a client is.

/// Where a client is, as far as the geo database knows. `None` where unknown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Geo {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Continent code (`EU`, `NA`, …).
    pub continent: Option<String>,
    /// ISO code of the first subdivision (state, region).
    pub region: Option<String>,
    /// English city name.
    pub city: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Autonomous system number (ASN databases).
    pub asn: Option<u32>,
    /// Autonomous system organisation (ASN databases).
    pub organization: Option<String>,
}
