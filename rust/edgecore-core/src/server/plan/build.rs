//! `Plan::build`: the spec and the library objects compiled into a [`Plan`], one `build_*` per
//! policy. Every error is a `Config` error naming the setting or rule at fault.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;

use super::edge;
use super::rules::{
    AbRule, BotPolicy, CacheRule, HeaderRule, JwtRule, LimitKey, Middleware, OriginRule, Plan, RateRule, Redirect,
    RequestPolicy, Rewrite, Route, Timeouts,
};
use crate::auth::TokenCache;
use crate::cache::{HttpCache, KeyOptions};
use crate::classify::Experiment;
use crate::error::{Error, Result};
use crate::geo::TrustedProxies;
use crate::server::conditions::Conditions;
use crate::server::error_pages::ErrorPage;
use crate::server::matcher::{Matcher, Pattern};
use crate::server::spec::{
    AbSpec, AppSpec, BotsSpec, CacheSpec, HeadersSpec, JwtSpec, MiddlewareSpec, Objects, OriginSpec, RateSpec,
    RedirectSpec, RewriteSpec, RouteSpec, ServerSpec,
};
use crate::server::template::{Bindings, Template};

fn header_name(n: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| Error::config(format!("invalid header name {n:?}")))
}

fn secs(v: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::config(format!("{what} must be a positive number of seconds")))
}

/// Builds each item of `items` with `f`; the first error wins.
fn each<S, T>(items: Vec<S>, f: impl FnMut(S) -> Result<T>) -> Result<Vec<T>> {
    items.into_iter().map(f).collect()
}

impl Plan {
    /// Compiles `spec` with `objects`.
    pub fn build(spec: AppSpec, objects: Objects) -> Result<Plan> {
        // What cached content depends on upstream of the cache rules (see `CacheRule::identity`).
        // Compression too: a stored entry is one coding of the response.
        let upstream = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            spec.origin, spec.upstreams, spec.origins, spec.rewrites, spec.headers, spec.compress
        );
        let timeouts = build_timeouts(&spec.server)?;
        let limits = build_limits(&spec.server)?;
        let tls = match (&spec.server.tls_cert, &spec.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::server::tls::server_config(cert, key)?),
            (None, None) => None,
            _ => return Err(Error::config("TLS needs both tls_cert and tls_key")),
        };
        if let Some(url) = &spec.server.purge_redis {
            crate::server::purge::client(url, &spec.server.purge_channel)?;
        }
        let request = build_request_policy(&spec)?;
        let mut resolver = super::upstreams::Resolver::new(spec.upstreams)?;
        let default_origin = spec.origin.as_deref().map(|o| resolver.resolve(o)).transpose()?;
        let fold = spec.server.case_insensitive_paths;
        let location: std::sync::Arc<str> = spec.location.as_deref().unwrap_or("").into();
        let loc = &*location;
        let request_id_field = spec.request_ids.as_ref().map(|r| r.header.clone());
        let bindings = Bindings {
            location: loc,
            request_id: request_id_field.as_deref(),
        };
        let bind = &bindings;
        let mut error_pages: Vec<ErrorPage> = Vec::new();
        for p in &spec.error_pages {
            let page = ErrorPage::new(p.status, &p.body, &p.content_type, loc)?;
            error_pages.retain(|e| e.status != page.status);
            error_pages.push(page);
        }
        let mut plan = Plan {
            location: location.clone(),
            error_pages,
            access: each(spec.access, edge::build_access)?,
            https_only: spec.https_only.map(edge::build_https).transpose()?,
            cors: each(spec.cors, edge::build_cors)?,
            request_ids: spec.request_ids.map(edge::build_request_ids).transpose()?,
            compress: each(spec.compress, edge::build_compress)?,
            origin: default_origin,
            upstreams: Vec::new(),
            trusted: TrustedProxies::new(&spec.trusted_proxies)?,
            geo: objects.geo.clone(),
            bots: spec.bots.map(|b| build_bots(b, &objects)).transpose()?,
            redirects: each(spec.redirects, |r| build_redirect(r, bind))?,
            rewrites: each(spec.rewrites, |r| build_rewrite(r, bind))?,
            origins: spec
                .origins
                .into_iter()
                .map(|o| build_origin_rule(o, &mut resolver))
                .collect::<Result<_>>()?,
            headers: each(spec.headers, |h| build_headers(h, bind))?,
            jwt: each(spec.jwt, |j| build_jwt(j, &objects))?,
            rate_limits: spec
                .rate_limits
                .into_iter()
                .enumerate()
                .map(|(i, r)| build_rate_limit(r, i, &objects))
                .collect::<Result<_>>()?,
            ab_tests: each(spec.ab_tests, build_ab)?,
            cache: each(spec.cache, |c| build_cache(c, &upstream))?,
            routes: each(spec.routes, build_route)?,
            middleware: each(spec.middleware, build_middleware)?,
            server: spec.server,
            timeouts,
            request,
            limits,
            tls,
        };
        plan.upstreams = resolver.finish();
        if fold {
            plan.fold_case()?;
        }
        Ok(plan)
    }

    /// Makes every path pattern of the plan match without regard to ASCII case.
    fn fold_case(&mut self) -> Result<()> {
        let matchers = (self.redirects.iter_mut().map(|r| &mut r.paths))
            .chain(self.rewrites.iter_mut().map(|r| &mut r.paths))
            .chain(self.origins.iter_mut().map(|r| &mut r.paths))
            .chain(self.headers.iter_mut().map(|r| &mut r.paths))
            .chain(self.jwt.iter_mut().map(|r| &mut r.paths))
            .chain(self.rate_limits.iter_mut().map(|r| &mut r.paths))
            .chain(self.ab_tests.iter_mut().map(|r| &mut r.paths))
            .chain(self.cache.iter_mut().map(|r| &mut r.paths))
            .chain(self.middleware.iter_mut().map(|r| &mut r.matcher))
            .chain(self.access.iter_mut().map(|r| &mut r.paths))
            .chain(self.cors.iter_mut().map(|r| &mut r.paths))
            .chain(self.compress.iter_mut().map(|r| &mut r.paths));
        for m in matchers {
            m.fold_case()?;
        }
        self.routes.iter_mut().try_for_each(|r| r.path.fold_case())
    }
}

/// The parser limits the server settings give.
fn build_limits(server: &ServerSpec) -> Result<crate::http::Limits> {
    let limits = crate::http::Limits {
        max_headers: 100,
        max_header_bytes: server.max_header_bytes,
        max_uri_bytes: server.max_uri_bytes,
        max_body_bytes: server.max_body_bytes,
    };
    limits.validate()?;
    Ok(limits)
}

/// The edit distance between two names (for "did you mean").
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Checks server settings (what `app.configure(...)` was given, as a JSON object) the way
/// building a plan would, so that a mistake is reported by the call that made it: an unknown
/// name (with the closest known one), a value of the wrong type, or a value out of range.
pub fn check_settings(json: &str) -> Result<()> {
    let given: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| Error::config(format!("settings must be a JSON object: {e}")))?;
    let known = serde_json::to_value(ServerSpec::default()).expect("the settings serialise");
    let known = known.as_object().expect("an object");
    for (name, value) in &given {
        if !known.contains_key(name) {
            let closest = known
                .keys()
                .min_by_key(|k| distance(name, k))
                .filter(|k| distance(name, k) <= 3);
            return Err(Error::config(match closest {
                Some(k) => format!("unknown setting '{name}' (did you mean '{k}'?)"),
                None => format!("unknown setting '{name}'"),
            }));
        }
        let mut one = serde_json::Map::new();
        one.insert(name.clone(), value.clone());
        serde_json::from_value::<ServerSpec>(serde_json::Value::Object(one))
            .map_err(|e| Error::config(format!("setting '{name}': {e}")))?;
    }
    let spec: ServerSpec =
        serde_json::from_value(serde_json::Value::Object(given)).map_err(|e| Error::config(e.to_string()))?;
    build_timeouts(&spec)?;
    crate::http::Limits {
        max_headers: 100,
        max_header_bytes: spec.max_header_bytes,
        max_uri_bytes: spec.max_uri_bytes,
        max_body_bytes: spec.max_body_bytes,
    }
    .validate()?;
    let app = AppSpec {
        server: spec,
        ..Default::default()
    };
    build_request_policy(&app)?;
    Ok(())
}

fn build_timeouts(s: &ServerSpec) -> Result<Timeouts> {
    Ok(Timeouts {
        header_read: secs(s.header_read_timeout, "header_read_timeout")?,
        keep_alive: secs(s.keep_alive_timeout, "keep_alive_timeout")?,
        handler: secs(s.handler_timeout, "handler_timeout")?,
        origin_connect: secs(s.origin_connect_timeout, "origin_connect_timeout")?,
        origin: secs(s.origin_timeout, "origin_timeout")?,
        grace: secs(s.grace_period, "grace_period")?,
        upgrade_idle: secs(s.upgrade_idle_timeout, "upgrade_idle_timeout")?,
    })
}

fn build_request_policy(spec: &AppSpec) -> Result<RequestPolicy> {
    use crate::http::canonical::{EscapedSlashes, PathParams, PathPolicy};
    let s = &spec.server;
    let escaped_slashes = EscapedSlashes::from_name(&s.escaped_slashes).ok_or_else(|| {
        Error::config(format!(
            "escaped_slashes must be \"reject\", \"keep\" or \"decode\", not {:?}",
            s.escaped_slashes
        ))
    })?;
    let path_params = PathParams::from_name(&s.path_params).ok_or_else(|| {
        Error::config(format!(
            "path_params must be \"reject\", \"strip\" or \"keep\", not {:?}",
            s.path_params
        ))
    })?;
    if let Some(addr) = &s.admin_addr {
        addr.parse::<std::net::SocketAddr>()
            .map_err(|_| Error::config(format!("admin_addr must be host:port with an IP host, not {addr:?}")))?;
    }
    if !(1..=128).contains(&s.ipv6_prefix) {
        return Err(Error::config("ipv6_prefix must be between 1 and 128"));
    }
    let allowed_hosts = match &s.allowed_hosts {
        None => None,
        Some(hosts) => Some(
            hosts
                .iter()
                .map(|h| {
                    let bare = h.strip_prefix("*.").unwrap_or(h);
                    if crate::http::canonical::valid_host(bare) {
                        Ok(h.to_ascii_lowercase())
                    } else {
                        Err(Error::config(format!("allowed_hosts: {h:?} is not a host name")))
                    }
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    // The names the edge sets from configuration.
    let mut owned_headers: Vec<HeaderName> = Vec::new();
    for j in &spec.jwt {
        for h in j.claims_to_headers.values() {
            owned_headers.push(header_name(h)?);
        }
    }
    for h in &spec.headers {
        for name in h.request.keys() {
            owned_headers.push(header_name(name)?);
        }
    }
    owned_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    owned_headers.dedup();
    Ok(RequestPolicy {
        path: PathPolicy {
            escaped_slashes,
            path_params,
        },
        allowed_hosts,
        ipv6_prefix: s.ipv6_prefix,
        metrics_allow: TrustedProxies::new(&s.metrics_allow)
            .map_err(|e| Error::config(format!("metrics_allow: {}", e.context)))?,
        explain: match (s.dev_mode, s.explain_allow.is_empty()) {
            (true, _) => Some(TrustedProxies::new(&["0.0.0.0/0", "::/0"])?),
            (false, true) => None,
            (false, false) => Some(
                TrustedProxies::new(&s.explain_allow)
                    .map_err(|e| Error::config(format!("explain_allow: {}", e.context)))?,
            ),
        },
        owned_headers,
    })
}

fn build_bots(b: BotsSpec, objects: &Objects) -> Result<BotPolicy> {
    let detector = objects
        .bots
        .clone()
        .ok_or_else(|| Error::config("bots() needs a bot detector"))?;
    let block = match b.action.as_str() {
        "block" => true,
        "tag" => false,
        a => {
            return Err(Error::config(format!(
                "bots action must be \"block\" or \"tag\", not {a:?}"
            )))
        }
    };
    // An allowed name is a product token (`Googlebot` matches `Googlebot/2.1` and
    // `compatible; Googlebot)`, not `NotGooglebotX` or `xGooglebot`); `re:` gives a regex.
    let patterns: Vec<String> = b
        .allow
        .iter()
        .map(|a| match a.strip_prefix("re:") {
            Some(re) => re.to_owned(),
            None => format!(r"(?i)(?:^|[\s;(,]){}(?:$|[/\s;),])", regex::escape(a)),
        })
        .collect();
    let allow = if patterns.is_empty() {
        None
    } else {
        Some(regex::RegexSet::new(&patterns).map_err(|e| Error::config(format!("invalid bots allow pattern: {e}")))?)
    };
    Ok(BotPolicy {
        shadow: b.shadow,
        detector,
        block,
        allow,
        memo: crate::memo::Memo::new(BotPolicy::MEMO_ENTRIES),
    })
}

fn build_redirect(r: RedirectSpec, bind: &Bindings<'_>) -> Result<Redirect> {
    // A status that is not a redirect fails here, not per request.
    crate::http::redirect("/", r.status)?;
    Ok(Redirect {
        paths: Matcher::excluding(&r.paths, &r.exclude)?,
        when: Conditions::build(r.when)?,
        to: Template::bound(&r.to, bind)?,
        status: r.status,
    })
}

fn build_rewrite(r: RewriteSpec, bind: &Bindings<'_>) -> Result<Rewrite> {
    if !r.to.starts_with('/') {
        return Err(Error::config(format!(
            "rewrite target {:?} must be a path starting with /",
            r.to
        )));
    }
    Ok(Rewrite {
        paths: Matcher::excluding(&r.paths, &r.exclude)?,
        when: Conditions::build(r.when)?,
        to: Template::bound(&r.to, bind)?,
    })
}

fn build_origin_rule(o: OriginSpec, resolver: &mut super::upstreams::Resolver) -> Result<OriginRule> {
    Ok(OriginRule {
        paths: Matcher::excluding(&o.paths, &o.exclude)?,
        when: Conditions::build(o.when)?,
        origin: resolver.resolve(&o.url)?,
    })
}

fn templates(m: BTreeMap<String, String>, bind: &Bindings<'_>) -> Result<Vec<(HeaderName, Template)>> {
    m.into_iter()
        .map(|(k, v)| Ok((header_name(&k)?, Template::bound(&v, bind)?)))
        .collect()
}

fn build_headers(h: HeadersSpec, bind: &Bindings<'_>) -> Result<HeaderRule> {
    Ok(HeaderRule {
        paths: Matcher::excluding(&h.paths, &h.exclude)?,
        when: Conditions::build(h.when)?,
        request: templates(h.request, bind)?,
        response: templates(h.response, bind)?,
    })
}

fn build_jwt(j: JwtSpec, objects: &Objects) -> Result<JwtRule> {
    let verifier = objects
        .verifiers
        .get(j.verifier)
        .cloned()
        .ok_or_else(|| Error::config(format!("unknown verifier {}", j.verifier)))?;
    Ok(JwtRule {
        shadow: j.shadow,
        paths: Matcher::excluding(&j.paths, &j.exclude)?,
        verifier,
        cookie: j.cookie,
        claims_to_headers: j
            .claims_to_headers
            .into_iter()
            .map(|(c, h)| Ok((c, header_name(&h)?)))
            .collect::<Result<_>>()?,
        cache: (j.cache_size > 0).then(|| TokenCache::new(j.cache_size)),
    })
}

fn build_rate_limit(r: RateSpec, i: usize, objects: &Objects) -> Result<RateRule> {
    let key = match r.key.split_once(':') {
        None if r.key == "ip" => LimitKey::Ip,
        Some(("header", n)) => LimitKey::Header(header_name(n)?),
        Some(("claim", n)) if !n.is_empty() => LimitKey::Claim(n.to_owned()),
        _ => {
            return Err(Error::config(format!(
                "rate limit key must be \"ip\", \"header:NAME\" or \"claim:NAME\", not {:?}",
                r.key
            )))
        }
    };
    let limiter = objects
        .limiters
        .get(r.limiter)
        .cloned()
        .ok_or_else(|| Error::config(format!("unknown limiter {}", r.limiter)))?;
    let fields = crate::server::respond::RateFields::from_name(&r.headers).ok_or_else(|| {
        Error::config(format!(
            "rate limit headers must be \"draft\", \"legacy\", \"both\" or \"none\", not {:?}",
            r.headers
        ))
    })?;
    Ok(RateRule {
        shadow: r.shadow,
        fields,
        policy: crate::server::respond::policy_value(limiter.limit(), limiter.period()),
        paths: Matcher::excluding(&r.paths, &r.exclude)?,
        limiter,
        key,
        namespace: format!("rl{i}:"),
    })
}

/// A cookie name as RFC 6265 allows it (an HTTP token), or an error naming the argument.
fn cookie_name(name: String, what: &str) -> Result<String> {
    if name.is_empty() || !name.bytes().all(crate::http::token::is_tchar) {
        return Err(Error::config(format!(
            "ab_test {what} {name:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
        )));
    }
    Ok(name)
}

fn build_ab(a: AbSpec) -> Result<AbRule> {
    let weights: Vec<(String, f64)> = a.variants.into_iter().collect();
    let valid_name = !a.name.is_empty()
        && a.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
        return Err(Error::config(format!(
            "experiment name {:?} must be letters, digits, - or _",
            a.name
        )));
    }
    let cookie = cookie_name(a.cookie.unwrap_or_else(|| format!("ec-ab-{}", a.name)), "cookie")?;
    let unit_cookie = cookie_name(a.unit_cookie.unwrap_or_else(|| "ec-uid".to_owned()), "unit_cookie")?;
    if cookie == unit_cookie {
        return Err(Error::config(format!(
            "experiment {:?}: cookie and unit_cookie must differ (both {cookie:?})",
            a.name
        )));
    }
    Ok(AbRule {
        paths: Matcher::excluding(&a.paths, &a.exclude)?,
        cookie,
        unit_cookie,
        header: header_name(&format!("x-ab-{}", a.name.to_ascii_lowercase()))?,
        experiment: Experiment::new(&a.name, &weights)?,
    })
}

fn build_cache(mut c: CacheSpec, upstream: &str) -> Result<CacheRule> {
    if c.ttl.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
        return Err(Error::config("cache ttl must be a positive number of seconds"));
    }
    if !(c.stale_if_error.is_finite() && c.stale_if_error >= 0.0) {
        return Err(Error::config("cache stale_if_error must be a number of seconds >= 0"));
    }
    let mut cache = HttpCache::new(c.max_bytes.max(4096), c.ttl, 32)
        .with_tag_fields_kept(c.forward_tags)
        .with_stale_if_error(c.stale_if_error);
    if let Some(fields) = &c.tag_fields {
        let names = fields
            .iter()
            .map(|f| header_name(f).map_err(|_| Error::config(format!("cache tag field {f:?} is not a header name"))))
            .collect::<Result<Vec<_>>>()?;
        cache = cache.with_tag_fields(names);
    }
    if let Some(f) = &c.targeted_field {
        let name = header_name(f).map_err(|_| Error::config(format!("targeted_field {f:?} is not a header name")))?;
        cache = cache.with_targeted_field(name);
    }
    let identity = format!("{upstream}|{c:?}");
    let when = Conditions::build(std::mem::take(&mut c.when))?;
    Ok(CacheRule {
        identity,
        paths: Matcher::excluding(&c.paths, &c.exclude)?,
        when,
        forward_tags: c.forward_tags,
        cache: Arc::new(cache),
        key: KeyOptions {
            ignore_query: c.ignore_query,
            ignore_params: c.ignore_params,
        },
        coalescer: Arc::default(),
    })
}

fn build_route(r: RouteSpec) -> Result<Route> {
    let any_method = r.methods.iter().any(|m| m == "*");
    let mut methods: Vec<http::Method> = r
        .methods
        .iter()
        .filter(|m| *m != "*")
        .map(|m| {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| Error::config(format!("invalid method {m:?}")))
        })
        .collect::<Result<_>>()?;
    // A GET route answers HEAD too (RFC 9110 §9.3.2; the server sends no body).
    if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
        methods.push(http::Method::HEAD);
    }
    Ok(Route {
        path: Pattern::new(&r.path)?,
        methods,
        any_method,
        handler: r.handler,
    })
}

fn build_middleware(m: MiddlewareSpec) -> Result<Middleware> {
    Ok(Middleware {
        matcher: Matcher::excluding(&m.matcher, &m.exclude)?,
        handler: m.handler,
    })
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
