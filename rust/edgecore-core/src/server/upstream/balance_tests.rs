//! Tests of balancing, health, the retry budget and circuit breaking.

use super::*;

fn set(n: usize, policy: SetPolicy) -> OriginSet {
    let targets = (0..n)
        .map(|i| Origin::parse(&format!("http://10.0.0.{i}:80"), i).unwrap())
        .collect();
    OriginSet {
        policy,
        ..OriginSet::new(Some("api".into()), targets, 0)
    }
}

#[test]
fn round_robin_skips_ejected_targets_and_the_one_that_failed() {
    let s = set(3, SetPolicy::default());
    let h = SetHealth::new(&s);
    let picks: Vec<usize> = (0..6).map(|_| h.pick(&s, None, None).0).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    for _ in 0..3 {
        h.report(&s, 1, false);
    }
    assert!(h.targets[1].is_ejected());
    assert_eq!(h.targets[1].ejected_total.load(Ordering::Relaxed), 1);
    assert!(
        (0..30).all(|_| h.pick(&s, None, None).0 != 1),
        "an ejected target gets no traffic"
    );
    assert!((0..30).all(|_| h.pick(&s, Some(0), None).0 == 2));
    // A success in between resets the count: two failures, a success, two failures stay in.
    h.report(&s, 0, false);
    h.report(&s, 0, false);
    h.report(&s, 0, true);
    h.report(&s, 0, false);
    h.report(&s, 0, false);
    assert!(!h.targets[0].is_ejected());
}

#[test]
fn never_more_than_the_cap_and_never_the_last_target() {
    let s = set(2, SetPolicy::default());
    let h = SetHealth::new(&s);
    for at in [0, 1] {
        for _ in 0..10 {
            h.report(&s, at, false);
        }
    }
    assert_eq!(h.targets.iter().filter(|t| t.is_ejected()).count(), 1);
    // With the other target out, requests still go somewhere.
    assert_eq!(h.pick(&s, None, None).0, 1);
    assert_eq!(h.pick(&s, Some(1), None).0, 0, "the least bad choice");
}

#[test]
fn ejections_grow_and_one_target_keeps_no_health() {
    let p = SetPolicy {
        eject_after: 1,
        eject_for: Duration::from_millis(1),
        eject_max: Duration::from_millis(3),
        ..SetPolicy::default()
    };
    let s = set(3, p);
    let h = SetHealth::new(&s);
    h.report(&s, 0, false);
    let first = h.targets[0].until_ms.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(5));
    h.report(&s, 0, false);
    let second = h.targets[0].until_ms.load(Ordering::Relaxed);
    assert!(second >= first + 2, "the second ejection is longer");
    let one = OriginSet::single(Origin::parse("http://a:1", 0).unwrap(), 0);
    let h1 = SetHealth::new(&one);
    for _ in 0..10 {
        h1.report(&one, 0, false);
    }
    assert!(!h1.targets[0].is_ejected());
}

#[test]
fn the_retry_budget_is_a_share_of_the_requests() {
    let s = set(2, SetPolicy::default());
    let h = SetHealth::new(&s);
    // 100 requests that all fail and ask for a retry (each retry picks a target too).
    let mut granted = 0;
    for _ in 0..100 {
        h.pick(&s, None, None);
        if h.take_retry(&s) {
            granted += 1;
            h.pick(&s, Some(0), None);
        }
    }
    assert!(
        (28..=30).contains(&granted),
        "20% of 100 requests plus the burst of 10: {granted}"
    );
    assert_eq!(h.retries(), granted);
}

fn with(balance: &str, weights: Option<&[u32]>, n: usize) -> OriginSet {
    let mut s = set(n, SetPolicy::default());
    s.balance = Balance::parse(balance).unwrap();
    if let Some(w) = weights {
        s.weights = Some(w.into());
        s.schedule = super::super::choose::schedule(w);
    }
    s
}

#[test]
fn least_conn_and_random_two_send_to_the_idle_target() {
    for balance in ["least_conn", "random_two"] {
        let s = with(balance, None, 3);
        let h = Arc::new(SetHealth::new(&s));
        // Targets 0 and 1 are busy with long requests.
        let mut held = Vec::new();
        for at in [0, 0, 1, 1] {
            let mut b = h.admit(&s).unwrap().expect("counted");
            b.assign(at);
            held.push(b);
        }
        let picks: Vec<usize> = (0..30).map(|_| h.pick(&s, None, None).0).collect();
        let to_idle = picks.iter().filter(|&&i| i == 2).count();
        if balance == "least_conn" {
            assert_eq!(to_idle, 30, "{picks:?}");
        } else {
            // Two of three at random: the idle one is among them two times in three.
            assert!(to_idle >= 14, "{balance}: {picks:?}");
        }
        assert_eq!(h.in_flight(), 4);
        drop(held);
        assert_eq!(h.in_flight(), 0);
        assert!(h.targets.iter().all(|t| t.active.load(Ordering::Relaxed) == 0));
    }
}

#[test]
fn hashing_keeps_a_key_on_its_target_until_that_target_is_out() {
    let s = with("hash:ip", None, 4);
    let h = SetHealth::new(&s);
    let owner: Vec<usize> = (0..200u64).map(|k| h.pick(&s, None, Some(mix(k))).0).collect();
    assert!((0..200u64).all(|k| h.pick(&s, None, Some(mix(k))).0 == owner[k as usize]));
    assert!((0..4).all(|t| owner.contains(&t)), "every target takes keys");
    h.targets[1].down.store(true, Ordering::Relaxed);
    for k in 0..200u64 {
        let now = h.pick(&s, None, Some(mix(k))).0;
        assert_ne!(now, 1);
        if owner[k as usize] != 1 {
            assert_eq!(now, owner[k as usize], "only the down target's keys move");
        }
    }
    // No key: round robin.
    let rr: Vec<usize> = (0..3).map(|_| h.pick(&s, None, None).0).collect();
    assert_eq!(rr.len(), 3);
}

#[test]
fn weighted_round_robin_follows_the_weights_and_skips_the_down() {
    let s = with("round_robin", Some(&[3, 1]), 2);
    let h = SetHealth::new(&s);
    let picks: Vec<usize> = (0..8).map(|_| h.pick(&s, None, None).0).collect();
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6, "{picks:?}");
    h.targets[0].down.store(true, Ordering::Relaxed);
    assert!((0..8).all(|_| h.pick(&s, None, None).0 == 1));
}

#[test]
fn the_circuit_breaker_refuses_over_its_limits() {
    let p = SetPolicy {
        max_requests: 2,
        max_pending: 1,
        ..SetPolicy::default()
    };
    let s = set(1, p);
    let h = Arc::new(SetHealth::new(&s));
    let a = h.admit(&s).unwrap();
    let b = h.admit(&s).unwrap();
    assert_eq!(h.admit(&s).unwrap_err(), Overflow::Requests);
    drop(a);
    let c = h.admit(&s).unwrap();
    assert!(c.is_some() && b.is_some());
    let w = h.wait(&s).unwrap();
    assert_eq!(h.wait(&s).err(), Some(Overflow::Pending));
    drop(w);
    assert!(h.wait(&s).is_ok());
    assert_eq!(h.overflows.load(Ordering::Relaxed), 2);
    // Without limits and with round robin nothing is counted.
    let plain = set(2, SetPolicy::default());
    let hp = Arc::new(SetHealth::new(&plain));
    assert!(hp.admit(&plain).unwrap().is_none());
}
