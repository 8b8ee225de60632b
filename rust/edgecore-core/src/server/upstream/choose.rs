//! How a set chooses among its usable targets: [`Balance`], weights, and the pure functions that
//! pick (no state of their own: the caller passes the counters and what is usable).
//!
//! - `round_robin`: the targets in turn; with weights, nginx's smooth weighted round robin,
//!   computed once into a schedule (`a a b a c` for 3:1:1 becomes `a b a c a`).
//! - `least_conn`: the target with the fewest requests in flight for its weight.
//! - `random_two`: two targets at random, the less busy of them (the power of two choices).
//! - `hash:ip`, `hash:header:NAME`, `hash:claim:NAME`: rendezvous hashing of the key with each
//!   target's URL (weighted: `w / -ln(u)`), so adding or removing a target moves only the keys
//!   that it takes or had, and an ejected target's keys spread over the others. A request
//!   without the key (no such header or claim) goes round robin.

use http::header::HeaderName;

/// What a hashing balancer hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client IP.
    Ip,
    /// A request field's value.
    Header(HeaderName),
    /// A verified token's claim.
    Claim(String),
}

/// A balancing policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// In turn (weighted when weights differ).
    RoundRobin,
    /// Fewest requests in flight per weight.
    LeastConn,
    /// The less busy of two at random.
    RandomTwo,
    /// Consistent hashing of a key.
    Hash(HashKey),
}

impl Balance {
    /// Parses `round_robin`, `least_conn`, `random_two`, `hash:ip`, `hash:header:NAME`,
    /// `hash:claim:NAME`.
    pub fn parse(s: &str) -> Option<Balance> {
        Some(match s {
            "round_robin" => Balance::RoundRobin,
            "least_conn" => Balance::LeastConn,
            "random_two" => Balance::RandomTwo,
            "hash:ip" => Balance::Hash(HashKey::Ip),
            _ => {
                if let Some(name) = s.strip_prefix("hash:header:") {
                    Balance::Hash(HashKey::Header(HeaderName::from_bytes(name.as_bytes()).ok()?))
                } else if let Some(name) = s.strip_prefix("hash:claim:") {
                    if name.is_empty() {
                        return None;
                    }
                    Balance::Hash(HashKey::Claim(name.to_owned()))
                } else {
                    return None;
                }
            }
        })
    }

    /// Whether it reads the requests in flight per target.
    pub fn counts(&self) -> bool {
        matches!(self, Balance::LeastConn | Balance::RandomTwo)
    }
}

/// The smooth weighted round-robin order for `weights` (empty when they are all equal: plain
/// turns need no schedule). Its length is the sum of the weights.
pub fn schedule(weights: &[u32]) -> Box<[u16]> {
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Box::new([]);
    }
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w);
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .expect("a set has targets");
            current[best] -= total;
            best as u16
        })
        .collect()
}

/// A 64-bit mixer (splitmix64's finaliser): spreads a key and a seed into a uniform hash.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rendezvous winner for `key` among `usable` targets (their seeds and weights).
pub fn rendezvous(key: u64, seeds: &[u64], weights: Option<&[u32]>, usable: impl Fn(usize) -> bool) -> Option<usize> {
    let candidates = (0..seeds.len()).filter(|&i| usable(i));
    match weights {
        None => candidates.max_by_key(|&i| mix(key ^ seeds[i])),
        Some(w) => candidates
            .map(|i| {
                // u in (0, 1]: the top 53 bits, never 0.
                let u = ((mix(key ^ seeds[i]) >> 11) | 1) as f64 / (1u64 << 53) as f64;
                (i, f64::from(w[i]) / -u.ln().min(-f64::MIN_POSITIVE))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i),
    }
}

/// Whether target `a` is less busy than `b` for their weights (`active / weight`).
pub fn less_busy(active: (u32, u32), weight: (u32, u32)) -> bool {
    u64::from(active.0) * u64::from(weight.1) < u64::from(active.1) * u64::from(weight.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_parse_and_bad_ones_do_not() {
        assert_eq!(Balance::parse("least_conn"), Some(Balance::LeastConn));
        assert_eq!(
            Balance::parse("hash:header:X-Tenant"),
            Some(Balance::Hash(HashKey::Header(HeaderName::from_static("x-tenant"))))
        );
        assert_eq!(
            Balance::parse("hash:claim:sub"),
            Some(Balance::Hash(HashKey::Claim("sub".into())))
        );
        for bad in [
            "",
            "roundrobin",
            "hash:",
            "hash:claim:",
            "hash:header:a b",
            "hash:cookie:x",
        ] {
            assert_eq!(Balance::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_schedule_is_smooth_and_keeps_the_weights() {
        assert!(schedule(&[1, 1, 1]).is_empty());
        let s = schedule(&[5, 1, 1]);
        assert_eq!(&*s, &[0, 0, 1, 0, 2, 0, 0]);
        let s = schedule(&[3, 2]);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        assert!(
            s.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
            "interleaved: {s:?}"
        );
    }

    #[test]
    fn rendezvous_moves_only_the_keys_of_a_removed_target() {
        let seeds: Vec<u64> = (0..5u64).map(|i| mix(i + 1000)).collect();
        let all = |_: usize| true;
        let before: Vec<usize> = (0..10_000u64)
            .map(|k| rendezvous(mix(k), &seeds, None, all).unwrap())
            .collect();
        let after: Vec<usize> = (0..10_000u64)
            .map(|k| rendezvous(mix(k), &seeds, None, |i| i != 2).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 2 {
                assert_eq!(a, b, "a key whose target stayed keeps it");
            }
        }
        let share = before.iter().filter(|&&t| t == 2).count();
        assert!((1600..2400).contains(&share), "about a fifth each: {share}");
    }

    #[test]
    fn weighted_rendezvous_follows_the_weights() {
        let seeds: Vec<u64> = (0..2u64).map(|i| mix(i + 7)).collect();
        let w = [3, 1];
        let first = (0..20_000u64)
            .filter(|&k| rendezvous(mix(k), &seeds, Some(&w), |_| true) == Some(0))
            .count();
        assert!((14_000..16_000).contains(&first), "three quarters: {first}");
    }

    #[test]
    fn busy_compares_per_weight() {
        assert!(less_busy((1, 2), (1, 1)));
        assert!(
            less_busy((3, 2), (3, 1)),
            "3 on weight 3 is less busy than 2 on weight 1"
        );
        assert!(!less_busy((2, 2), (1, 1)));
    }
}
