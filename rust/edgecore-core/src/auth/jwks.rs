//! A JWK Set fetched from a URL by the core.
//!
//! Invariants:
//! - the key set in use is swapped atomically (`ArcSwap`): a verification sees the old set or the
//!   new one, never a mix, and never waits for a fetch;
//! - a failed refresh keeps the last good set;
//! - refreshes happen on a timer (background task, ended when the verifier is dropped) and when a
//!   token names an unknown `kid` — at most once per `min_interval`, and only one at a time, so a
//!   flood of tokens with made-up kids cannot turn into a flood of fetches;
//! - a set that cannot be fetched at start is a configuration error only when `strict`; by
//!   default the verifier starts with no keys (every token is refused: 401), says so in one log
//!   line, and retries with backoff (1 s doubling up to the refresh interval, at most 60 s) until
//!   the set arrives — the identity provider being down does not stop the edge from starting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::json::parse_object;
use super::keyset::KeySet;
use crate::error::{Error, Result};

/// Largest JWK Set document we accept.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Refresh timing for a remote key set.
#[derive(Debug, Clone, Copy)]
pub struct JwksTiming {
    /// Regular refresh period.
    pub refresh_interval: Duration,
    /// Smallest gap between two refreshes caused by unknown kids.
    pub min_interval: Duration,
    /// Timeout of one fetch.
    pub timeout: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            refresh_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A remote JWK Set and its refresh state.
pub struct RemoteJwks {
    url: http::Uri,
    keys: ArcSwap<KeySet>,
    timing: JwksTiming,
    /// When the last refresh started; the lock is held during a refresh (try_lock: one at a time).
    last_refresh: Mutex<Instant>,
    /// Fetches attempted and failed. Relaxed: statistics, not used for synchronisation.
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Changes whenever a fetched set differs from the one in use (a hash of the document), so
    /// results cached under the old keys can tell they are stale.
    generation: AtomicU64,
    /// Whether a set was ever fetched (until then, refreshes back off from 1 s).
    loaded: AtomicBool,
}

impl RemoteJwks {
    /// Fetches the set once and starts the background refresh. When the fetch fails: with
    /// `strict`, a configuration error naming the URL; otherwise the verifier starts with no
    /// keys (tokens are refused), logs it, and retries with backoff until the set arrives.
    pub fn start(url: &str, timing: JwksTiming, strict: bool) -> Result<Arc<Self>> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| Error::config(format!("invalid jwks_url {url:?}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(Error::config(format!("jwks_url {url:?} must be http:// or https://")));
        }
        let first = crate::rt::background().block_on(fetch(&uri, timing.timeout));
        let (keys, generation, loaded, failures) = match first {
            Ok((set, generation)) => (set, generation, true, 0),
            Err(e) if strict => {
                return Err(Error::config(format!("fetching the JWK Set from {url}: {e}")));
            }
            Err(e) => {
                eprintln!(
                    "edgecore: the JWK Set at {url} cannot be fetched ({e}): every token is refused (401) \
                     until it can; retrying with backoff (jwks_strict=True makes this a start-up error)"
                );
                (KeySet::default(), 0, false, 1)
            }
        };
        let this = Arc::new(RemoteJwks {
            url: uri,
            keys: ArcSwap::from_pointee(keys),
            timing,
            last_refresh: Mutex::new(Instant::now()),
            fetches: AtomicU64::new(1),
            failures: AtomicU64::new(failures),
            generation: AtomicU64::new(generation),
            loaded: AtomicBool::new(loaded),
        });
        crate::rt::background().spawn(refresh_loop(Arc::downgrade(&this), timing.refresh_interval));
        Ok(this)
    }

    /// Whether a key set has been fetched (false while a non-strict start waits for it).
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// The key set in use.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Identifies the key set in use: it changes when a refresh brings different keys. Read it
    /// before verifying, so a rotation during the verification makes the result stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// (fetches, failures) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.fetches.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// Refreshes now, unless another refresh runs or one ran within `min_interval`.
    /// Returns whether a new key set was installed.
    pub async fn refresh_if_allowed(&self) -> bool {
        self.claim_refresh() && self.refresh().await
    }

    /// Takes the right to refresh now: false when a refresh is under way or ran within
    /// `min_interval`. Not async, so no lock guard ever lives inside a future.
    fn claim_refresh(&self) -> bool {
        match self.last_refresh.try_lock() {
            Some(mut last) if last.elapsed() >= self.timing.min_interval => {
                *last = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn mark_refreshed(&self) {
        *self.last_refresh.lock() = Instant::now();
    }

    /// `refresh_if_allowed` from synchronous code (returns false on an async runtime thread).
    pub fn refresh_blocking(&self) -> bool {
        crate::rt::block_on(self.refresh_if_allowed()).unwrap_or(false)
    }

    async fn refresh(&self) -> bool {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match fetch(&self.url, self.timing.timeout).await {
            Ok((set, generation)) => {
                self.keys.store(Arc::new(set));
                self.generation.store(generation, Ordering::Release);
                if !self.loaded.swap(true, Ordering::AcqRel) {
                    eprintln!("edgecore: the JWK Set at {} arrived: tokens are verified", self.url);
                }
                true
            }
            Err(_) => {
                // Keep the last good set; the failure is visible in stats().
                self.failures.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The set at `url` and a hash of its document (its generation).
async fn fetch(url: &http::Uri, timeout: Duration) -> Result<(KeySet, u64)> {
    let body = crate::client::get(url, timeout, MAX_JWKS_BYTES).await?;
    let doc = parse_object(&body).map_err(|e| Error::config(format!("JWK Set is not valid JSON: {e}")))?;
    Ok((KeySet::from_jwks(&doc)?, xxhash_rust::xxh3::xxh3_64(&body)))
}

/// Refreshes every `every`; until a first set arrives, after 1 s, doubling to `every` (60 s at
/// most).
async fn refresh_loop(weak: Weak<RemoteJwks>, every: Duration) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let waiting = weak.upgrade().is_some_and(|j| !j.loaded());
        tokio::time::sleep(if waiting { backoff } else { every }).await;
        let Some(jwks) = weak.upgrade() else { return };
        jwks.mark_refreshed();
        if !jwks.refresh().await && waiting {
            backoff = (backoff * 2).min(every).min(Duration::from_secs(60));
        }
    }
}
