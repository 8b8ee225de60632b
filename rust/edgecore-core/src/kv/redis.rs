//! The Redis KV store: the same API and semantics on `SET … PX`, `GET`, `DEL` and `SCAN`.
//! Keys live under a namespace (`edgecore:kv:` by default) so one Redis can serve other users.

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
}

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
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    /// The value of `key`, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let k = self.key(key);
        let v: Option<Vec<u8>> = self.conn.run(|mut c| async move { c.get(k).await }).await?;
        Ok(v.map(Bytes::from))
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
                    .await
            }
            None => {
                self.conn
                    .run(|mut c| async move { c.set::<_, _, ()>(k, v).await })
                    .await
            }
        }
    }

    /// Removes `key`; returns whether it was there.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let k = self.key(key);
        let n: i64 = self.conn.run(|mut c| async move { c.del(k).await }).await?;
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
