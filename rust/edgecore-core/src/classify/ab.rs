//! A/B assignment: deterministic, weighted, sticky, and independent across experiments.
//!
//! The documented hash: XXH3-64 (seed 0) of the UTF-8 bytes `experiment`, 0x1F, `unit`. Its top
//! 53 bits, divided by 2^53, give a point `u` in [0, 1). Variants are ordered by name (so the
//! order of a dict does not matter) and each owns a slice of [0, 1) proportional to its weight;
//! the variant whose slice holds `u` is assigned. Same inputs give the same variant in every
//! process, language and restart (any XXH3 implementation reproduces it); a different experiment
//! name gives an independent point.

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

/// A validated experiment: variants sorted by name with cumulative weights.
#[derive(Debug, Clone)]
pub struct Experiment {
    name: String,
    variants: Vec<(String, f64)>,
}

/// The point in [0, 1) for `experiment` and `unit`.
pub fn point(experiment: &str, unit: &str) -> f64 {
    let mut buf = Vec::with_capacity(experiment.len() + unit.len() + 1);
    buf.extend_from_slice(experiment.as_bytes());
    buf.push(0x1f);
    buf.extend_from_slice(unit.as_bytes());
    (xxh3_64(&buf) >> 11) as f64 / (1u64 << 53) as f64
}

impl Experiment {
    /// Validates the weights: at least one variant, non-empty names, finite non-negative
    /// weights with a positive sum.
    pub fn new(name: &str, weights: &[(String, f64)]) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::config(format!("experiment {name:?} has no variants")));
        }
        let mut variants: Vec<(String, f64)> = weights.to_vec();
        variants.sort_by(|a, b| a.0.cmp(&b.0));
        let mut total = 0.0;
        for (i, (v, w)) in variants.iter().enumerate() {
            if v.is_empty() {
                return Err(Error::config(format!(
                    "experiment {name:?} has a variant with an empty name"
                )));
            }
            if i > 0 && variants[i - 1].0 == *v {
                return Err(Error::config(format!("experiment {name:?} lists variant {v:?} twice")));
            }
            if !(w.is_finite() && *w >= 0.0) {
                return Err(Error::config(format!(
                    "experiment {name:?}: weight of {v:?} must be a non-negative number"
                )));
            }
            total += w;
        }
        if total <= 0.0 {
            return Err(Error::config(format!(
                "experiment {name:?}: weights must not all be zero"
            )));
        }
        let mut acc = 0.0;
        for (_, w) in variants.iter_mut() {
            acc += *w / total;
            *w = acc;
        }
        Ok(Experiment {
            name: name.to_owned(),
            variants,
        })
    }

    /// The experiment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The variant for `unit`.
    pub fn assign(&self, unit: &str) -> &str {
        let u = point(&self.name, unit);
        self.variants
            .iter()
            .find(|(_, upper)| u < *upper)
            .or(self.variants.iter().rev().find(|(_, upper)| *upper > 0.0))
            .map(|(v, _)| v.as_str())
            .unwrap_or(&self.variants[0].0)
    }

    /// The variant names, sorted.
    pub fn variants(&self) -> impl Iterator<Item = &str> {
        self.variants.iter().map(|(v, _)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(w: &[(&str, f64)]) -> Experiment {
        Experiment::new("hero", &w.iter().map(|(a, b)| (a.to_string(), *b)).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn deterministic_and_weighted() {
        let e = exp(&[("b", 0.5), ("a", 0.5)]);
        assert_eq!(e.assign("user-1"), e.assign("user-1"));
        let e9 = exp(&[("a", 9.0), ("b", 1.0)]);
        let n = (0..100_000).filter(|i| e9.assign(&i.to_string()) == "a").count();
        assert!((89_000..=91_000).contains(&n), "{n}");
        let only = exp(&[("a", 0.0), ("b", 1.0)]);
        assert!((0..1000).all(|i| only.assign(&i.to_string()) == "b"));
    }

    #[test]
    fn the_hash_is_documented_xxh3() {
        // XXH3-64("exp\x1funit") with seed 0, top 53 bits over 2^53.
        let h = xxh3_64(b"exp\x1funit");
        assert_eq!(point("exp", "unit"), (h >> 11) as f64 / 9007199254740992.0);
    }

    #[test]
    fn validation() {
        let bad = |w: &[(&str, f64)]| {
            Experiment::new("x", &w.iter().map(|(a, b)| (a.to_string(), *b)).collect::<Vec<_>>())
                .unwrap_err()
                .context
        };
        assert!(bad(&[]).contains("no variants"));
        assert!(bad(&[("a", -1.0)]).contains("non-negative"));
        assert!(bad(&[("a", 0.0)]).contains("all be zero"));
        assert!(bad(&[("", 1.0)]).contains("empty name"));
    }
}
