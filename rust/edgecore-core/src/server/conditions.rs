//! Conditions a rule may carry beside its paths (`country=`, `continent=`, `device=`,
//! `cookie=`, `header=`): the rule applies only to requests that meet all of them. An empty
//! set always holds and costs one branch.

use std::collections::BTreeMap;

use http::header::HeaderName;
use serde::Deserialize;

use crate::classify::Device;
use crate::error::{Error, Result};
use crate::http::Request;

/// What Python sends: each field optional. A cookie or header named with no value (None)
/// must be present; with a value, equal to it.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WhenSpec {
    pub(crate) country: Option<Vec<String>>,
    pub(crate) continent: Option<Vec<String>>,
    pub(crate) device: Option<Vec<String>>,
    pub(crate) cookie: BTreeMap<String, Option<String>>,
    pub(crate) header: BTreeMap<String, Option<String>>,
}

/// The compiled conditions of one rule.
#[derive(Debug, Default)]
pub struct Conditions {
    country: Option<Vec<String>>,
    continent: Option<Vec<String>>,
    device: Option<Vec<Device>>,
    cookies: Vec<(String, Option<String>)>,
    headers: Vec<(HeaderName, Option<String>)>,
}

fn upper(list: Option<Vec<String>>) -> Option<Vec<String>> {
    list.map(|l| l.into_iter().map(|c| c.to_ascii_uppercase()).collect())
}

impl Conditions {
    /// Compiles `spec` (a bad device class or header name is a ConfigError naming it).
    pub(crate) fn build(spec: WhenSpec) -> Result<Conditions> {
        let device = spec
            .device
            .map(|list| {
                list.iter()
                    .map(|d| {
                        Device::parse(d).ok_or_else(|| {
                            Error::config(format!(
                                "device {d:?} is not one of \"mobile\", \"tablet\", \"desktop\", \"bot\""
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let headers = spec
            .header
            .into_iter()
            .map(|(k, v)| {
                HeaderName::from_bytes(k.as_bytes())
                    .map(|n| (n, v))
                    .map_err(|_| Error::config(format!("header condition {k:?} is not a header name")))
            })
            .collect::<Result<_>>()?;
        Ok(Conditions {
            country: upper(spec.country),
            continent: upper(spec.continent),
            device,
            cookies: spec.cookie.into_iter().collect(),
            headers,
        })
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.country.is_none()
            && self.continent.is_none()
            && self.device.is_none()
            && self.cookies.is_empty()
            && self.headers.is_empty()
    }

    /// The countries condition, if any (for the configuration report).
    pub fn countries(&self) -> Option<&[String]> {
        self.country.as_deref()
    }

    /// Whether `req` meets every condition (an unknown country or continent meets none).
    pub fn hold(&self, req: &Request) -> bool {
        if self.is_empty() {
            return true;
        }
        let geo = req.edge.geo.as_deref();
        let listed = |list: &Option<Vec<String>>, value: Option<&str>| {
            list.as_ref()
                .is_none_or(|l| value.is_some_and(|v| l.iter().any(|x| x == v)))
        };
        listed(&self.country, geo.and_then(|g| g.country.as_deref()))
            && listed(&self.continent, geo.and_then(|g| g.continent.as_deref()))
            && self.device.as_ref().is_none_or(|d| d.contains(&req.device()))
            && self
                .cookies
                .iter()
                .all(|(name, want)| matches(req.cookie(name), want.as_deref()))
            && self
                .headers
                .iter()
                .all(|(name, want)| matches(req.header(name.as_str()), want.as_deref()))
    }
}

fn matches(got: Option<&str>, want: Option<&str>) -> bool {
    match (got, want) {
        (Some(_), None) => true,
        (Some(g), Some(w)) => g == w,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn when(v: serde_json::Value) -> Conditions {
        Conditions::build(serde_json::from_value(v).unwrap()).unwrap()
    }

    fn req(headers: &[(&str, &str)], country: Option<&str>) -> Request {
        let mut r = Request::new(http::Method::GET, "/".parse().unwrap());
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
            r.headers.as_map_mut().append(name, v.parse().unwrap());
        }
        r.edge.geo = country.map(|c| {
            std::sync::Arc::new(crate::geo::Geo {
                country: Some(c.into()),
                continent: Some("EU".into()),
                ..Default::default()
            })
        });
        r
    }

    #[test]
    fn every_condition_must_hold() {
        assert!(when(serde_json::json!({})).hold(&req(&[], None)));
        let c = when(serde_json::json!({"country": ["de", "AT"], "device": ["mobile"]}));
        assert!(c.hold(&req(&[("sec-ch-ua-mobile", "?1")], Some("DE"))));
        assert!(!c.hold(&req(&[("sec-ch-ua-mobile", "?0")], Some("DE"))));
        assert!(!c.hold(&req(&[("sec-ch-ua-mobile", "?1")], Some("FR"))));
        assert!(!c.hold(&req(&[("sec-ch-ua-mobile", "?1")], None)));
        let c = when(serde_json::json!({"cookie": {"beta": "1", "seen": null}, "header": {"X-Plan": "pro"}}));
        assert!(c.hold(&req(&[("cookie", "seen=x; beta=1"), ("x-plan", "pro")], None)));
        assert!(!c.hold(&req(&[("cookie", "beta=1"), ("x-plan", "pro")], None)));
        assert!(!c.hold(&req(&[("cookie", "seen=x; beta=2"), ("x-plan", "pro")], None)));
        assert!(!c.hold(&req(&[("cookie", "seen=x; beta=1")], None)));
        assert!(when(serde_json::json!({"continent": ["eu"]})).hold(&req(&[], Some("FR"))));
    }

    #[test]
    fn bad_conditions_are_named() {
        let err = |v| {
            Conditions::build(serde_json::from_value(v).unwrap())
                .unwrap_err()
                .context
                .to_string()
        };
        assert!(err(serde_json::json!({"device": ["phone"]})).contains("\"phone\""));
        assert!(err(serde_json::json!({"header": {"bad name": null}})).contains("bad name"));
    }
}
