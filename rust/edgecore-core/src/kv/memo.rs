//! A node's copy of KV reads (`cache_ttl`): a read is served from it while younger than
//! `cache_ttl`; a write through any node publishes the key and every node forgets it, so a
//! value is stale here only while an invalidation is in flight, and never longer than
//! `cache_ttl` when one is lost. Whenever the subscription is (re)made, the whole copy is
//! dropped (what was published meanwhile was not heard).
//!
//! A read that started before an invalidation does not store what it read (the generation
//! moved), so a slow `GET` cannot put back a value a write just replaced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;

/// The per-node copy.
pub struct Memo {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, (Option<Bytes>, Instant), foldhash::fast::RandomState>>,
    /// Moves on every invalidation heard or made here.
    generation: AtomicU64,
    /// Subscribed to the invalidation channel now (reads are memoised only then).
    listening: std::sync::atomic::AtomicBool,
    /// Invalidations heard. Relaxed: a statistic.
    heard: AtomicU64,
}

impl Memo {
    /// A copy keeping reads for `ttl`, at most `max_entries` of them.
    pub fn new(ttl: Duration, max_entries: usize) -> Arc<Memo> {
        Arc::new(Memo {
            ttl,
            max_entries: max_entries.max(1),
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
            listening: std::sync::atomic::AtomicBool::new(false),
            heard: AtomicU64::new(0),
        })
    }

    /// The current generation (taken before a read that may be remembered).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A fresh copy of `key`'s value (Some(None): known absent), or None.
    pub fn get(&self, key: &str) -> Option<Option<Bytes>> {
        let entries = self.entries.lock();
        let (v, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    /// Keeps what a read found, unless an invalidation came since `generation` or nobody
    /// listens for invalidations right now.
    pub fn remember(&self, key: &str, value: Option<Bytes>, generation: u64) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key.to_owned(), (value, Instant::now()));
    }

    /// Forgets `key` (an empty key: everything).
    pub fn forget(&self, key: &str) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if key.is_empty() {
            entries.clear();
        } else {
            entries.remove(key);
        }
    }

    /// Invalidations heard so far, and whether the subscription is up.
    pub fn stats(&self) -> (u64, bool) {
        (
            self.heard.load(Ordering::Relaxed),
            self.listening.load(Ordering::Acquire),
        )
    }
}

/// Subscribes to `channel` (the seeds in turn), forgetting each key heard, until the memo is
/// dropped; reconnects with backoff.
pub async fn listen(memo: Weak<Memo>, clients: Vec<redis::Client>, channel: String) {
    let mut backoff = Duration::from_millis(50);
    let mut turn = 0usize;
    loop {
        if memo.strong_count() == 0 {
            return;
        }
        let client = &clients[turn % clients.len()];
        turn += 1;
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        if let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(2), connected).await {
            backoff = Duration::from_millis(50);
            let Some(m) = memo.upgrade() else { return };
            // What was published while nobody listened was not heard: start empty.
            m.forget("");
            m.listening.store(true, Ordering::Release);
            drop(m);
            let mut messages = pubsub.into_on_message();
            loop {
                // Wake now and then to notice a dropped memo.
                match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                    Ok(Some(msg)) => {
                        let Some(m) = memo.upgrade() else { return };
                        m.forget(&String::from_utf8_lossy(msg.get_payload_bytes()));
                        m.heard.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err(_) if memo.strong_count() == 0 => return,
                    Err(_) => {}
                }
            }
            if let Some(m) = memo.upgrade() {
                m.listening.store(false, Ordering::Release);
                m.forget("");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
