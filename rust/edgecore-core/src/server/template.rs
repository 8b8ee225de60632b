//! Header value templates: `{geo.country}`, `{geo.region}`, `{geo.city}`, `{geo.continent}`,
//! `{claims.NAME}`, `{variant.NAME}`, `{client_ip}`, `{bot}`, `{path}`, `{query}`. Parsed once;
//! rendering a template is a few string pushes. Unknown values render as the empty string.

use crate::error::{Error, Result};
use crate::http::Request;

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Country,
    Region,
    City,
    Continent,
    Claim(String),
    Variant(String),
    ClientIp,
    Bot,
    Path,
    Query,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `s`.
    pub fn new(s: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| Error::config(format!("unclosed {{ in template {s:?}")))?
                + open;
            let name = &rest[open + 1..close];
            parts.push(match name {
                "geo.country" => Part::Country,
                "geo.region" => Part::Region,
                "geo.city" => Part::City,
                "geo.continent" => Part::Continent,
                "client_ip" => Part::ClientIp,
                "bot" => Part::Bot,
                "path" => Part::Path,
                "query" => Part::Query,
                n if n.starts_with("claims.") && n.len() > 7 => Part::Claim(n[7..].to_owned()),
                n if n.starts_with("variant.") && n.len() > 8 => Part::Variant(n[8..].to_owned()),
                n => return Err(Error::config(format!("unknown template variable {{{n}}} in {s:?}"))),
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Whether the template is plain text.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Renders against what the pipeline knows about `req`.
    pub fn render(&self, req: &Request) -> String {
        let e = &req.edge;
        let geo = e.geo.as_deref();
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Country => out.push_str(geo.and_then(|g| g.country.as_deref()).unwrap_or("")),
                Part::Region => out.push_str(geo.and_then(|g| g.region.as_deref()).unwrap_or("")),
                Part::City => out.push_str(geo.and_then(|g| g.city.as_deref()).unwrap_or("")),
                Part::Continent => out.push_str(geo.and_then(|g| g.continent.as_deref()).unwrap_or("")),
                Part::Claim(n) => match e.claims.as_ref().and_then(|c| c.get(n)) {
                    Some(v) if !v.is_null() => out.push_str(&crate::auth::claim_text(v)),
                    _ => {}
                },
                Part::Variant(n) => out.push_str(e.variant(n).unwrap_or("")),
                Part::ClientIp => {
                    if let Some(ip) = e.client_ip {
                        out.push_str(&ip.to_string());
                    }
                }
                Part::Bot => out.push_str(if e.is_bot { "1" } else { "0" }),
                Part::Path => out.push_str(req.path()),
                Part::Query => out.push_str(req.query()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let mut r = Request::new(http::Method::GET, "/p?q=1".parse().unwrap());
        r.edge.geo = Some(std::sync::Arc::new(crate::geo::Geo {
            country: Some("DE".into()),
            ..Default::default()
        }));
        r.edge.variants.push(("hero".into(), "b".into()));
        let t = Template::new("c={geo.country} v={variant.hero} p={path}?{query} x={claims.sub}").unwrap();
        assert_eq!(t.render(&r), "c=DE v=b p=/p?q=1 x=");
        assert!(Template::new("{nope}").is_err() && Template::new("{geo.country").is_err());
    }
}
