//! What the start-up message says about a plan: warnings about risky rules (one that an earlier
//! rule always shadows, trusted proxies nothing uses, no origin), and the active policies.

use super::rules::Plan;
use crate::server::matcher::Matcher;

impl Plan {
    /// Human-readable warnings about risky configuration (shown at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.server.dev_mode {
            w.push(
                "dev mode is on: requests can set their geo, client IP and bot status through x-edge-dev-* headers"
                    .into(),
            );
        }
        // First-match policies: a rule whose paths an earlier rule already covers never applies.
        let first_match = |what: &str, rules: Vec<(&Matcher, bool)>, w: &mut Vec<String>| {
            for (i, (m, _)) in rules.iter().enumerate() {
                if let Some(j) = rules[..i]
                    .iter()
                    .position(|(e, unconditional)| *unconditional && m.shadowed_by(e))
                {
                    w.push(format!(
                        "{what} #{i} can never apply: {what} #{j} matches every path it does"
                    ));
                }
            }
        };
        first_match(
            "redirect",
            self.redirects.iter().map(|r| (&r.paths, r.when.is_empty())).collect(),
            &mut w,
        );
        first_match(
            "rewrite",
            self.rewrites.iter().map(|r| (&r.paths, r.when.is_empty())).collect(),
            &mut w,
        );
        first_match("jwt rule", self.jwt.iter().map(|r| (&r.paths, true)).collect(), &mut w);
        first_match(
            "cache rule",
            self.cache.iter().map(|r| (&r.paths, r.when.is_empty())).collect(),
            &mut w,
        );
        // A cache rule in front of a Python route: the handler runs on a miss only, and what it
        // answers is served to every client its Cache-Control allows.
        for (i, rule) in self.cache.iter().enumerate() {
            for (j, route) in self.routes.iter().enumerate() {
                if rule.paths.patterns().iter().any(|p| route.path.shadowed_by(p)) {
                    w.push(format!(
                        "cache rule #{i} covers route #{j}: the handler runs only on a miss, and its answers are \
                         served to every client their Cache-Control allows (mark per-user answers private)"
                    ));
                }
            }
        }
        if !self.trusted.is_empty() && self.jwt.is_empty() && self.rate_limits.is_empty() && self.geo.is_empty() {
            w.push("trusted proxies are set but nothing uses the client IP".into());
        }
        if self.origin.is_none() && self.origins.is_empty() && self.routes.is_empty() {
            w.push("no origin and no routes: every request that no policy answers gets 404".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            for (j, earlier) in self.routes[..i].iter().enumerate() {
                if r.path.shadowed_by(&earlier.path)
                    && (earlier.methods.is_empty() || r.methods.iter().all(|m| earlier.methods.contains(m)))
                {
                    w.push(format!(
                        "route #{i} can never match: route #{j} matches every path it does"
                    ));
                }
            }
        }
        w
    }

    /// Names of the active policies, for the start-up message.
    pub fn summary(&self) -> Vec<String> {
        let mut s = Vec::new();
        let mut add = |n: usize, what: &str| {
            if n > 0 {
                s.push(format!("{n} {what}"));
            }
        };
        add(self.redirects.len(), "redirect(s)");
        add(self.rewrites.len(), "rewrite(s)");
        add(self.jwt.len(), "JWT polic(ies)");
        add(self.rate_limits.len(), "rate limit(s)");
        add(self.ab_tests.len(), "A/B test(s)");
        add(self.cache.len(), "cache rule(s)");
        add(self.headers.len(), "header rule(s)");
        add(self.routes.len(), "Python route(s)");
        add(self.middleware.len(), "Python middleware");
        if !self.geo.is_empty() {
            s.push("geo".into());
        }
        if self.bots.is_some() {
            s.push("bot detection".into());
        }
        if let Some(id) = self.origin {
            let set = &self.upstreams[id];
            match &set.name {
                None => s.push(format!(
                    "origin {}://{}",
                    set.targets[0].scheme, set.targets[0].authority
                )),
                Some(_) => s.push(format!("origin {}", upstream_summary(set))),
            }
        }
        for set in self.upstreams.iter().filter(|s| s.name.is_some()) {
            if Some(set.id) != self.origin {
                s.push(upstream_summary(set));
            }
        }
        if let Some(url) = &self.server.purge_redis {
            s.push(format!(
                "cache purges broadcast on {url} channel {:?}",
                self.server.purge_channel
            ));
        }
        if let Some(cert) = &self.server.tls_cert {
            s.push(format!("TLS ({cert}; ALPN h2, http/1.1)"));
        }
        s
    }
}

/// `upstream api (3 targets, least_conn, health /healthz every 5s, at most 100 in flight)`.
fn upstream_summary(set: &crate::server::upstream::OriginSet) -> String {
    use crate::server::upstream::{Balance, HashKey};
    let balance = match &set.balance {
        Balance::RoundRobin if set.weights.is_some() => "weighted round robin".to_owned(),
        Balance::RoundRobin => "round robin".to_owned(),
        Balance::LeastConn => "least_conn".to_owned(),
        Balance::RandomTwo => "random_two".to_owned(),
        Balance::Hash(HashKey::Ip) => "hash of the client IP".to_owned(),
        Balance::Hash(HashKey::Header(h)) => format!("hash of {h}"),
        Balance::Hash(HashKey::Claim(c)) => format!("hash of claim {c}"),
    };
    let mut parts = vec![format!("{} targets", set.targets.len()), balance];
    if let Some(c) = &set.check {
        parts.push(format!("health {} every {:?}", c.path, c.interval));
    }
    if set.policy.max_requests > 0 {
        parts.push(format!("at most {} in flight", set.policy.max_requests));
    }
    if set.policy.max_pending > 0 {
        parts.push(format!("at most {} waiting to connect", set.policy.max_pending));
    }
    format!("upstream {} ({})", set.label(), parts.join(", "))
}
