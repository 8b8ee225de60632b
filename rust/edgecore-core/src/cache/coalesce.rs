//! Request coalescing: concurrent misses for one key make one origin fetch.
//!
//! The first caller for a key runs the fetch; callers arriving while it runs wait for the same
//! result (`tokio::sync::OnceCell`). If the leader is cancelled (its client went away), one of
//! the waiters takes over the fetch instead of everyone failing. The in-flight entry is removed
//! when the fetch completes, so later callers go through the cache again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;

/// The in-flight fetches, by key.
pub struct Coalescer<V> {
    inflight: Mutex<HashMap<String, Arc<OnceCell<V>>>>,
}

impl<V: Clone> Default for Coalescer<V> {
    fn default() -> Self {
        Coalescer {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Coalescer<V> {
    /// Runs `fetch` for `key` unless a fetch for it is already running, in which case it waits
    /// for that one. Returns the value and whether this caller ran the fetch.
    pub async fn run<F, Fut>(&self, key: &str, fetch: F) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self
            .inflight
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let mut ran = false;
        let value = cell
            .get_or_init(|| {
                ran = true;
                fetch()
            })
            .await
            .clone();
        if ran {
            let mut map = self.inflight.lock();
            if map.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(key);
            }
        }
        (value, ran)
    }

    /// Fetches in flight now.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_fetch() {
        let c = Arc::new(Coalescer::<u32>::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (c, fetches) = (c.clone(), fetches.clone());
                tokio::spawn(async move {
                    c.run("k", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
                })
            })
            .collect();
        let mut leaders = 0;
        for t in tasks {
            let (v, ran) = t.await.unwrap();
            assert_eq!(v, 7);
            leaders += ran as usize;
        }
        assert_eq!((fetches.load(Ordering::SeqCst), leaders), (1, 1));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over() {
        let c = Arc::new(Coalescer::<u32>::default());
        let c2 = c.clone();
        let leader = tokio::spawn(async move {
            c2.run("k", || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                1
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        let (v, ran) = c.run("k", || async { 2 }).await;
        assert_eq!((v, ran), (2, true));
    }
}
