//! Origins as sets of targets: a plain origin URL becomes a set of one, `upstream:NAME` the named
//! set (one set however many rules name it, so they share its health). Target indices are handed
//! out in set order, which is the order of [`super::Plan::each_origin`].

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::server::spec::{HealthCheckSpec, UpstreamSpec};
use crate::server::upstream::choose::schedule;
use crate::server::upstream::{Balance, HealthCheck, Origin, OriginSet, SetPolicy};

/// Targets an upstream may have (the weighted schedule is at most this × the largest weight).
const MAX_TARGETS: usize = 256;
/// The largest weight.
const MAX_WEIGHT: u32 = 100;

/// Turns origin strings into set ids, making the sets as it goes.
pub(crate) struct Resolver {
    specs: HashMap<String, UpstreamSpec>,
    named: HashMap<String, usize>,
    sets: Vec<OriginSet>,
    next_target: usize,
}

impl Resolver {
    /// Checks the upstream specs (names unique, settings in range).
    pub(crate) fn new(specs: Vec<UpstreamSpec>) -> Result<Resolver> {
        let mut by_name = HashMap::new();
        for s in specs {
            policy(&s)?;
            balancing(&s)?;
            check(&s)?;
            if s.targets.is_empty() || s.targets.len() > MAX_TARGETS {
                return Err(Error::config(format!(
                    "upstream {:?} needs 1 to {MAX_TARGETS} targets, got {}",
                    s.name,
                    s.targets.len()
                )));
            }
            for (i, url) in s.targets.iter().enumerate() {
                Origin::parse(url, 0).map_err(|e| Error::config(format!("upstream {:?}: {e}", s.name)))?;
                if s.targets[..i].contains(url) {
                    return Err(Error::config(format!("upstream {:?} lists {url:?} twice", s.name)));
                }
            }
            if s.name.is_empty() || s.name.contains(char::is_whitespace) {
                return Err(Error::config(format!("upstream name {:?} must be a word", s.name)));
            }
            let name = s.name.clone();
            if by_name.insert(name.clone(), s).is_some() {
                return Err(Error::config(format!("upstream {name:?} is defined twice")));
            }
        }
        Ok(Resolver {
            specs: by_name,
            named: HashMap::new(),
            sets: Vec::new(),
            next_target: 0,
        })
    }

    /// The set id for `origin`: a URL, or `upstream:NAME`.
    pub(crate) fn resolve(&mut self, origin: &str) -> Result<usize> {
        let Some(name) = origin.strip_prefix("upstream:") else {
            let target = Origin::parse(origin, self.next_target)?;
            self.next_target += 1;
            self.sets.push(OriginSet::single(target, self.sets.len()));
            return Ok(self.sets.len() - 1);
        };
        if let Some(&id) = self.named.get(name) {
            return Ok(id);
        }
        let spec = self.specs.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.specs.keys().map(String::as_str).collect();
            known.sort_unstable();
            Error::config(format!("unknown upstream {name:?} (defined: {known:?})"))
        })?;
        let mut targets = Vec::with_capacity(spec.targets.len());
        for url in &spec.targets {
            targets.push(Origin::parse(url, self.next_target)?);
            self.next_target += 1;
        }
        let id = self.sets.len();
        let (balance, weights) = balancing(spec)?;
        self.sets.push(OriginSet {
            policy: policy(spec)?,
            schedule: weights.as_deref().map(schedule).unwrap_or_default(),
            balance,
            weights,
            check: check(spec)?,
            ..OriginSet::new(Some(name.to_owned()), targets.into(), id)
        });
        self.named.insert(name.to_owned(), id);
        Ok(id)
    }

    /// The sets made, by id.
    pub(crate) fn finish(self) -> Vec<OriginSet> {
        self.sets
    }
}

fn seconds(v: f64, what: &str, name: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::config(format!(
                "upstream {name:?}: {what} must be a positive number of seconds"
            ))
        })
}

/// The balancing and the weights (None when they are all equal).
fn balancing(s: &UpstreamSpec) -> Result<(Balance, Option<Box<[u32]>>)> {
    let name = &s.name;
    let balance = Balance::parse(&s.balance).ok_or_else(|| {
        Error::config(format!(
            "upstream {name:?}: balance {:?} is not supported (supported: \"round_robin\", \"least_conn\", \"random_two\", \"hash:ip\", \"hash:header:NAME\", \"hash:claim:NAME\")",
            s.balance
        ))
    })?;
    let Some(weights) = &s.weights else {
        return Ok((balance, None));
    };
    if weights.len() != s.targets.len() {
        return Err(Error::config(format!(
            "upstream {name:?}: {} weights for {} targets (one each)",
            weights.len(),
            s.targets.len()
        )));
    }
    if weights.iter().any(|w| !(1..=MAX_WEIGHT).contains(w)) {
        return Err(Error::config(format!(
            "upstream {name:?}: weights must be whole numbers from 1 to {MAX_WEIGHT}, got {weights:?}"
        )));
    }
    let equal = weights.windows(2).all(|w| w[0] == w[1]);
    Ok((balance, (!equal).then(|| weights.clone().into())))
}

/// The active health check, if any.
fn check(s: &UpstreamSpec) -> Result<Option<HealthCheck>> {
    let Some(h): Option<&HealthCheckSpec> = s.health.as_ref() else {
        return Ok(None);
    };
    let name = &s.name;
    let path: http::uri::PathAndQuery = h.path.parse().ok().filter(|_| h.path.starts_with('/')).ok_or_else(|| {
        Error::config(format!(
            "upstream {name:?}: health path {:?} must be a path starting with /",
            h.path
        ))
    })?;
    let interval = seconds(h.interval, "health interval", name)?;
    let timeout = seconds(h.timeout, "health timeout", name)?;
    if h.healthy == 0 || h.unhealthy == 0 {
        return Err(Error::config(format!(
            "upstream {name:?}: health healthy and unhealthy must be at least 1"
        )));
    }
    Ok(Some(HealthCheck {
        path,
        interval,
        timeout,
        healthy: h.healthy,
        unhealthy: h.unhealthy,
    }))
}

fn policy(s: &UpstreamSpec) -> Result<SetPolicy> {
    let name = &s.name;
    if s.max_ejected_percent > 100 {
        return Err(Error::config(format!(
            "upstream {name:?}: max_ejected_percent must be 0..100"
        )));
    }
    if !(0.0..=1.0).contains(&s.retry_budget) {
        return Err(Error::config(format!(
            "upstream {name:?}: retry_budget must be between 0 and 1"
        )));
    }
    let eject_for = seconds(s.eject_for, "eject_for", name)?;
    let eject_max = seconds(s.eject_max, "eject_max", name)?;
    if eject_max < eject_for {
        return Err(Error::config(format!(
            "upstream {name:?}: eject_max is shorter than eject_for"
        )));
    }
    Ok(SetPolicy {
        eject_after: s.eject_after,
        eject_for,
        eject_max,
        max_ejected_percent: s.max_ejected_percent,
        retries: s.retries,
        budget_ratio: s.retry_budget,
        max_requests: s.max_requests,
        max_pending: s.max_pending,
    })
}
