//! Cache purge broadcast over Redis pub/sub.
//!
//! Every node of a deployment subscribes to one channel (default `edgecore:purge`). A message is
//! a purge prefix, applied to every response cache of the node's current plan: `/products/`
//! (starting with `/`) removes those paths on any host, `https://shop.example/products/` a full
//! URL prefix, and an empty message everything. Anything that can `PUBLISH` can purge:
//! `Running.purge()`, `edgecore purge`, or `redis-cli PUBLISH edgecore:purge /products/`.
//!
//! The subscriber reconnects with backoff (50 ms doubling to 2 s) when Redis goes away; while it
//! is disconnected a purge cannot reach this node, which `edgecore_purge_subscribed 0` shows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::store::RedisConn;

/// The default channel.
pub const DEFAULT_CHANNEL: &str = "edgecore:purge";

/// The purge channel of a server: the subscription's state and a connection to publish on.
pub struct Broadcast {
    /// Where to subscribe: the server, or each seed of a cluster in turn (a message published
    /// on any node of a cluster reaches subscribers on every node).
    clients: Vec<redis::Client>,
    publisher: Arc<RedisConn>,
    channel: String,
    /// Subscribed right now.
    pub subscribed: AtomicBool,
    /// Purge messages received so far. Relaxed: a statistic.
    pub received: AtomicU64,
}

/// Checks a purge broadcast's settings: the clients to subscribe through for `url` (nothing
/// connects), or the precise configuration error.
pub fn client(url: &str, channel: &str) -> Result<Vec<redis::Client>> {
    if channel.is_empty() {
        return Err(Error::config("the purge channel name must not be empty"));
    }
    crate::store::pubsub_clients(url)
}

impl Broadcast {
    /// A broadcast on `channel` of the Redis at `url` (nothing connects until [`Self::run`]).
    pub fn new(url: &str, channel: &str) -> Result<Arc<Self>> {
        Ok(Arc::new(Broadcast {
            clients: client(url, channel)?,
            publisher: RedisConn::new(url, Duration::from_secs(2))?,
            channel: channel.to_owned(),
            subscribed: AtomicBool::new(false),
            received: AtomicU64::new(0),
        }))
    }

    /// Publishes `prefix` to every subscribed node; returns how many received it.
    pub async fn publish(&self, prefix: &str) -> Result<u64> {
        let (channel, prefix) = (self.channel.clone(), prefix.to_owned());
        self.publisher
            .run(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(prefix)
                    .query_async::<u64>(&mut c)
                    .await
            })
            .await
    }

    /// Subscribes and hands each purge prefix received to `apply` until `stop`.
    pub async fn run(self: Arc<Self>, apply: impl Fn(&str) + Send + 'static, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        let mut turn = 0usize;
        while !*stop.borrow() {
            // A cluster's seeds in turn: a node that went away is not retried forever.
            let client = &self.clients[turn % self.clients.len()];
            turn += 1;
            let connected = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                redis::RedisResult::Ok(pubsub)
            };
            let pubsub = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(2), connected) => r.ok().and_then(|r| r.ok()),
                _ = stop.changed() => return,
            };
            if let Some(pubsub) = pubsub {
                self.subscribed.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        _ = stop.changed() => None,
                    };
                    let Some(msg) = msg else { break };
                    let prefix = String::from_utf8_lossy(msg.get_payload_bytes());
                    apply(&prefix);
                    self.received.fetch_add(1, Ordering::Relaxed);
                }
                self.subscribed.store(false, Ordering::Relaxed);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_without_connecting() {
        assert!(client("redis://127.0.0.1:1/0", "edgecore:purge").is_ok());
        let e = client("redis://127.0.0.1:1/0", "").err().unwrap();
        assert!(e.context.contains("channel name must not be empty"), "{e}");
        let e = client("not a url", "c").err().unwrap();
        assert!(e.context.contains("invalid Redis URL \"not a url\""), "{e}");
        // Nothing listens on port 1: creating the broadcast still succeeds (it connects lazily).
        assert!(Broadcast::new("redis://127.0.0.1:1/0", "c").is_ok());
    }
}
