//! Origins as sets of targets: a plain origin URL becomes a set of one, `upstream:NAME` the named
//! set (one set however many rules name it, so they share its health). Target indices are handed
//! out in set order, which is the order of [`super::Plan::each_origin`].

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::server::spec::UpstreamSpec;
use crate::server::upstream::{Origin, OriginSet, SetPolicy};

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
            if s.targets.is_empty() {
                return Err(Error::config(format!("upstream {:?} has no targets", s.name)));
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
        self.sets.push(OriginSet {
            name: Some(name.to_owned()),
            targets: targets.into(),
            id,
            policy: policy(spec)?,
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

fn policy(s: &UpstreamSpec) -> Result<SetPolicy> {
    let name = &s.name;
    if s.balance != "round_robin" {
        return Err(Error::config(format!(
            "upstream {name:?}: balance {:?} is not supported (supported: \"round_robin\")",
            s.balance
        )));
    }
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
    })
}
