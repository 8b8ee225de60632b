//! The Redis KV store: the same API and semantics on `SET … PX`, `GET`, `DEL`, `INCRBY` and
//! `SCAN`. Keys live under a namespace (`edgecore:kv:` by default) so one Redis can serve other
//! users.
//!
//! With a read memo ([`super::memo::Memo`], `cache_ttl`), reads are served from this node's copy
//! for up to `cache_ttl`; every write through any node publishes the key on the namespace's
//! invalidation channel, and each node drops its copy when it hears it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;

use crate::error::Result;
use crate::store::RedisConn;

/// The Redis-backed store.
pub struct RedisKv {
    conn: Arc<RedisConn>,
    namespace: String,
    memo: Option<Arc<super::memo::Memo>>,
}

/// `INCRBY` that gives a new key its TTL (ARGV[2] ms; empty: none) and keeps an existing one's.
const INCR: &str = r#"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"#;

/// Escapes Redis glob characters so a prefix matches literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisKv {
    /// A store on `conn` under `namespace`.
    pub fn new(conn: Arc<RedisConn>, namespace: &str) -> Self {
        RedisKv {
            conn,
            namespace: namespace.to_owned(),
            memo: None,
        }
    }

    /// The store with a read memo of `cache_ttl` that listens for invalidations on `url`
    /// (subscribing in the background on [`crate::rt::background`]).
    pub fn with_memo(mut self, url: &str, cache_ttl: Duration, max_entries: usize) -> Result<Self> {
        let memo = super::memo::Memo::new(cache_ttl, max_entries);
        let clients = crate::store::pubsub_clients(url)?;
        let channel = self.channel();
        crate::rt::background().spawn(super::memo::listen(Arc::downgrade(&memo), clients, channel));
        self.memo = Some(memo);
        Ok(self)
    }

    /// The memo, if reads are memoised.
    pub fn memo(&self) -> Option<&Arc<super::memo::Memo>> {
        self.memo.as_ref()
    }

    fn channel(&self) -> String {
        format!("{}__invalidate", self.namespace)
    }

    /// Drops `key` from every node's memo (this one at once, the others through pub/sub).
    async fn invalidate(&self, key: &str) -> Result<()> {
        let Some(memo) = &self.memo else { return Ok(()) };
        memo.forget(key);
        let (channel, key) = (self.channel(), key.to_owned());
        self.conn
            .run(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(key)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(drop)
    }

    /// The value of `key` from this node's memo, when fresh there (no round trip).
    pub fn get_memoised(&self, key: &str) -> Option<Option<Bytes>> {
        self.memo.as_ref()?.get(key)
    }

    /// Adds `by` to the integer at `key` atomically and returns the sum; a new key gets `ttl`.
    pub async fn incr(&self, key: &str, by: i64, ttl: Option<Duration>) -> Result<i64> {
        let k = self.key(key);
        let ms = ttl
            .map(|t| (t.as_micros().div_ceil(1000)).max(1).to_string())
            .unwrap_or_default();
        let v: i64 = self
            .conn
            .run(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(INCR)
                    .arg(1)
                    .arg(k)
                    .arg(by)
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        self.invalidate(key).await?;
        Ok(v)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    /// The value of `key`, if present (from this node's memo when fresh there).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(v) = self.get_memoised(key) {
            return Ok(v);
        }
        let generation = self.memo.as_ref().map(|m| m.generation());
        let k = self.key(key);
        let v: Option<Vec<u8>> = self.conn.run(|mut c| async move { c.get(k).await }).await?;
        let v = v.map(Bytes::from);
        if let (Some(memo), Some(g)) = (&self.memo, generation) {
            memo.remember(key, v.clone(), g);
        }
        Ok(v)
    }

    /// Stores `value`, expiring after `ttl` (rounded up to the millisecond) when given.
    pub async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        let k = self.key(key);
        let v = value.to_vec();
        match ttl {
            Some(t) => {
                let ms = (t.as_micros().div_ceil(1000)).max(1) as u64;
                self.conn
                    .run(|mut c| async move { c.pset_ex::<_, _, ()>(k, v, ms).await })
                    .await?
            }
            None => {
                self.conn
                    .run(|mut c| async move { c.set::<_, _, ()>(k, v).await })
                    .await?
            }
        }
        self.invalidate(key).await
    }

    /// Removes `key`; returns whether it was there.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let k = self.key(key);
        let n: i64 = self.conn.run(|mut c| async move { c.del(k).await }).await?;
        self.invalidate(key).await?;
        Ok(n > 0)
    }

    /// Keys starting with `prefix`, sorted (every master of a cluster is scanned).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut keys: Vec<String> = self
            .conn
            .scan(&pattern)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.namespace).map(str::to_owned))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn prefixes_match_literally() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
