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

impl Geo {
    /// Fills the fields this record does not know from `other` (a second database's record).
    pub fn fill_from(&mut self, other: Geo) {
        fn fill<T>(mine: &mut Option<T>, theirs: Option<T>) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        fill(&mut self.country, other.country);
        fill(&mut self.continent, other.continent);
        fill(&mut self.region, other.region);
        fill(&mut self.city, other.city);
        fill(&mut self.postal_code, other.postal_code);
        fill(&mut self.latitude, other.latitude);
        fill(&mut self.longitude, other.longitude);
        fill(&mut self.timezone, other.timezone);
        fill(&mut self.asn, other.asn);
        fill(&mut self.organization, other.organization);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_record_fills_only_what_the_first_lacks() {
        let mut city = Geo {
            country: Some("DE".into()),
            city: Some("Berlin".into()),
            ..Default::default()
        };
        city.fill_from(Geo {
            country: Some("XX".into()),
            asn: Some(3320),
            organization: Some("DTAG".into()),
            ..Default::default()
        });
        assert_eq!(city.country.as_deref(), Some("DE"));
        assert_eq!((city.asn, city.organization.as_deref()), (Some(3320), Some("DTAG")));
    }
}
