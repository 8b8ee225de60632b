//! Header value and redirect templates: `{geo.country}`, `{geo.region}`, `{geo.city}`,
//! `{geo.continent}`, `{claims.NAME}`, `{variant.NAME}`, `{client_ip}`, `{bot}`, `{device}`,
//! `{cookie.NAME}`, `{header.NAME}`, `{location}`, `{request_id}` (with `app.request_ids()`),
//! `{path}`, `{query}` (the query string, no `?`) and `{path_and_query}` (the path, then
//! `?query` when there is one). A default follows a
//! `|`: `{geo.country|US}`. Parsed once; rendering is a few string pushes.
//!
//! A value that is unknown (no geo data, no such claim, cookie or header) takes its default;
//! with no default, a header template renders as absent (the header is not sent) and a
//! redirect or rewrite template renders it as empty.

use crate::error::{Error, Result};
use crate::http::Request;

#[derive(Debug, Clone)]
enum Source {
    Country,
    Region,
    City,
    Continent,
    Claim(String),
    Variant(String),
    ClientIp,
    Bot,
    Device,
    Cookie(String),
    Header(String),
    Path,
    Query,
    PathAndQuery,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Var(Source, Option<String>),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

fn named(prefix: &str, name: &str) -> Option<String> {
    name.strip_prefix(prefix).filter(|n| !n.is_empty()).map(str::to_owned)
}

fn source(name: &str) -> Option<Source> {
    Some(match name {
        "geo.country" => Source::Country,
        "geo.region" => Source::Region,
        "geo.city" => Source::City,
        "geo.continent" => Source::Continent,
        "client_ip" => Source::ClientIp,
        "bot" => Source::Bot,
        "device" => Source::Device,
        "path" => Source::Path,
        "query" => Source::Query,
        "path_and_query" => Source::PathAndQuery,
        n => {
            if let Some(c) = named("claims.", n) {
                Source::Claim(c)
            } else if let Some(v) = named("variant.", n) {
                Source::Variant(v)
            } else if let Some(c) = named("cookie.", n) {
                Source::Cookie(c)
            } else if let Some(h) = named("header.", n) {
                Source::Header(h.to_ascii_lowercase())
            } else {
                return None;
            }
        }
    })
}

/// What the plan binds into its templates when it compiles them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bindings<'a> {
    /// Where this edge runs (`{location}`).
    pub location: &'a str,
    /// The request-ID field (`{request_id}` reads it: the request ID phase has set it by the
    /// time any template renders); None without `app.request_ids()`.
    pub request_id: Option<&'a str>,
}

impl Template {
    /// Compiles `s`; `{location}` becomes `location` (where this edge runs).
    pub fn with_location(s: &str, location: &str) -> Result<Template> {
        Template::bound(
            s,
            &Bindings {
                location,
                request_id: None,
            },
        )
    }

    /// Compiles `s` with the plan's bindings.
    pub fn bound(s: &str, bindings: &Bindings<'_>) -> Result<Template> {
        let location = bindings.location;
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
            let inner = &rest[open + 1..close];
            let (name, default) = match inner.split_once('|') {
                Some((n, d)) => (n.trim(), Some(d.to_owned())),
                None => (inner.trim(), None),
            };
            if name == "location" {
                parts.push(Part::Lit(location.to_owned()));
            } else if name == "request_id" {
                let field = bindings.request_id.ok_or_else(|| {
                    Error::config(format!(
                        "template {s:?} uses {{request_id}}, which needs app.request_ids()"
                    ))
                })?;
                parts.push(Part::Var(Source::Header(field.to_ascii_lowercase()), default));
            } else {
                let src = source(name)
                    .ok_or_else(|| Error::config(format!("unknown template variable {{{name}}} in {s:?}")))?;
                parts.push(Part::Var(src, default));
            }
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Compiles `s` (with no location: `{location}` renders empty).
    pub fn new(s: &str) -> Result<Template> {
        Template::with_location(s, "")
    }

    /// Whether the template is plain text.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// Renders against what the pipeline knows about `req`; unknown values without a default
    /// render empty.
    pub fn render(&self, req: &Request) -> String {
        let mut out = String::new();
        self.render_into(req, &mut out);
        out
    }

    /// Renders against `req`, or None when a value is unknown and has no default (a header
    /// template then sends no header).
    pub fn render_present(&self, req: &Request) -> Option<String> {
        let mut out = String::new();
        self.render_into(req, &mut out).then_some(out)
    }

    /// Appends the rendering to `out`; false when some value was unknown with no default.
    fn render_into(&self, req: &Request, out: &mut String) -> bool {
        let mut complete = true;
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(src, default) => {
                    let before = out.len();
                    if !value(src, req, out) || (out.len() == before && !matches!(src, Source::Query)) {
                        out.truncate(before);
                        match default {
                            Some(d) => out.push_str(d),
                            None => complete = false,
                        }
                    }
                }
            }
        }
        complete
    }
}

/// Appends the value of `src`; false when it is unknown.
fn value(src: &Source, req: &Request, out: &mut String) -> bool {
    let e = &req.edge;
    let geo = e.geo.as_deref();
    let push = |out: &mut String, v: Option<&str>| v.map(|v| out.push_str(v)).is_some();
    match src {
        Source::Country => push(out, geo.and_then(|g| g.country.as_deref())),
        Source::Region => push(out, geo.and_then(|g| g.region.as_deref())),
        Source::City => push(out, geo.and_then(|g| g.city.as_deref())),
        Source::Continent => push(out, geo.and_then(|g| g.continent.as_deref())),
        Source::Claim(n) => match e.claims.as_ref().and_then(|c| c.get(n)) {
            Some(v) if !v.is_null() => {
                out.push_str(&crate::auth::claim_text(v));
                true
            }
            _ => false,
        },
        Source::Variant(n) => push(out, e.variant(n)),
        Source::ClientIp => match e.client_ip {
            Some(ip) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{ip}");
                true
            }
            None => false,
        },
        Source::Bot => push(out, Some(if e.is_bot { "1" } else { "0" })),
        Source::Device => push(out, Some(req.device().as_str())),
        Source::Cookie(n) => push(out, req.cookie(n)),
        Source::Header(n) => push(out, req.header(n.as_str())),
        Source::Path => push(out, Some(req.path())),
        Source::Query => push(out, Some(req.query())),
        Source::PathAndQuery => {
            out.push_str(req.path());
            let q = req.query();
            if !q.is_empty() {
                out.push('?');
                out.push_str(q);
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(path: &str) -> Request {
        let mut r = Request::new(http::Method::GET, path.parse().unwrap());
        r.edge.geo = Some(std::sync::Arc::new(crate::geo::Geo {
            country: Some("DE".into()),
            ..Default::default()
        }));
        r
    }

    #[test]
    fn renders() {
        let mut r = located("/p?q=1");
        r.edge.variants.push(("hero".into(), "b".into()));
        let t = Template::new("c={geo.country} v={variant.hero} p={path}?{query} x={claims.sub}").unwrap();
        assert_eq!(t.render(&r), "c=DE v=b p=/p?q=1 x=");
        assert!(Template::new("{nope}").is_err() && Template::new("{geo.country").is_err());
        assert!(Template::new("{request_id}").is_err() && Template::new("{cookie.}").is_err());
    }

    #[test]
    fn the_request_id_reads_the_field_the_plan_names() {
        let mut r = located("/p");
        let b = Bindings {
            location: "fra",
            request_id: Some("X-Request-Id"),
        };
        let t = Template::bound("{location}/{request_id|none}", &b).unwrap();
        assert_eq!(t.render(&r), "fra/none");
        r.headers
            .as_map_mut()
            .insert("x-request-id", http::HeaderValue::from_static("abc123"));
        assert_eq!(t.render(&r), "fra/abc123");
        let e = Template::new("{request_id}").unwrap_err();
        assert!(e.context.contains("needs app.request_ids()"), "{e}");
    }

    #[test]
    fn defaults_and_absent_values() {
        let r = located("/p");
        let t = |s: &str| Template::new(s).unwrap();
        assert_eq!(t("{geo.region|unknown}").render_present(&r).as_deref(), Some("unknown"));
        assert_eq!(t("{geo.country|US}").render_present(&r).as_deref(), Some("DE"));
        // No default: the header is not sent (not sent empty).
        assert_eq!(t("{geo.region}").render_present(&r), None);
        assert_eq!(t("r={geo.region}").render(&r), "r=");
        // An empty default is a value.
        assert_eq!(t("{cookie.theme|}").render_present(&r).as_deref(), Some(""));
        let plain = Request::new(http::Method::GET, "/p".parse().unwrap());
        assert_eq!(t("{geo.country|US}").render_present(&plain).as_deref(), Some("US"));
        assert_eq!(
            Template::with_location("{location}", "fra1").unwrap().render(&plain),
            "fra1"
        );
    }

    #[test]
    fn cookies_headers_device_and_the_query() {
        let mut r = located("/a?x=1");
        r.headers
            .as_map_mut()
            .insert("cookie", "theme=dark; id=7".parse().unwrap());
        r.headers.as_map_mut().insert("x-plan", "pro".parse().unwrap());
        r.headers.as_map_mut().insert("sec-ch-ua-mobile", "?1".parse().unwrap());
        let t = |s: &str| Template::new(s).unwrap().render_present(&r);
        assert_eq!(t("{cookie.theme}/{cookie.id}").as_deref(), Some("dark/7"));
        assert_eq!(t("{cookie.nope}"), None);
        assert_eq!(t("{header.X-Plan}").as_deref(), Some("pro"));
        assert_eq!(t("{device}").as_deref(), Some("mobile"));
        assert_eq!(t("https://x{path_and_query}").as_deref(), Some("https://x/a?x=1"));
        let bare = Request::new(http::Method::GET, "/a".parse().unwrap());
        assert_eq!(Template::new("{path_and_query}").unwrap().render(&bare), "/a");
        assert_eq!(
            Template::new("{path}?{query}")
                .unwrap()
                .render_present(&bare)
                .as_deref(),
            Some("/a?")
        );
    }
}
