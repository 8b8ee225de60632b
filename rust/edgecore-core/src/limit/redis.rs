//! The shared limiter: GCRA as one atomic Lua script in Redis.
//!
//! The script reads Redis's own clock (`TIME`), so clock skew between edge nodes changes nothing;
//! it runs as one atomic step per check; every key it writes carries a TTL equal to the time the
//! bucket needs to refill (an idle key disappears by itself). Key names are
//! `edgecore:rl:<limit>/<period_ms>/<burst>:{<key>}`: the hash tag makes the Cluster slot the
//! client key's, and limiters with different parameters never share state. The `redis` crate's
//! script is called by EVALSHA, and sent whole (EVAL) to a node that answers NOSCRIPT: the
//! script cache is per node, and a replica promoted by a failover starts without it.

use std::sync::Arc;

use super::gcra::{Gcra, Outcome};
use crate::error::Result;
use crate::store::RedisConn;

/// GCRA in microseconds (Lua numbers are doubles: epoch microseconds stay exact below 2^53).
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tau
if now < allow_at then
  return {0, tat - now, allow_at - now}
end
if new_tat > now then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return {1, new_tat - now, 0}
"#;

/// The Redis-backed limiter (no fallback logic: see `RateLimiter`).
pub struct RedisLimiter {
    gcra: Gcra,
    conn: Arc<RedisConn>,
    script: redis::Script,
    prefix: String,
}

impl RedisLimiter {
    /// A limiter for `gcra` on `conn`; `period_ms` names the key space.
    pub fn new(gcra: Gcra, period_ms: u64, conn: Arc<RedisConn>) -> Self {
        let prefix = format!("edgecore:rl:{}/{}/{}:", gcra.limit, period_ms, gcra.burst);
        RedisLimiter {
            gcra,
            conn,
            script: redis::Script::new(SCRIPT),
            prefix,
        }
    }

    /// The connection.
    pub fn conn(&self) -> &Arc<RedisConn> {
        &self.conn
    }

    /// The Redis key for a client key.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{{{key}}}", self.prefix)
    }

    /// One atomic check in Redis.
    pub async fn check(&self, key: &str, cost: u64) -> Result<Outcome> {
        let interval_us = (self.gcra.interval / 1000).max(1);
        let tau_us = interval_us * self.gcra.burst;
        let rkey = self.redis_key(key);
        let hash = self.script.get_hash();
        let (allowed, used, retry): (i64, i64, i64) = self
            .conn
            .run(|mut c| async move {
                // EVALSHA on the key's node; a node that does not have the script yet (new, or a
                // replica promoted by a failover: the script cache is per node) gets it with
                // EVAL, on the same node (both route by the key).
                let call = |name: &str, body: &str| {
                    let mut cmd = redis::cmd(name);
                    cmd.arg(body).arg(1).arg(&rkey).arg(interval_us).arg(tau_us).arg(cost);
                    cmd
                };
                match call("EVALSHA", hash).query_async(&mut c).await {
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                        call("EVAL", SCRIPT).query_async(&mut c).await
                    }
                    other => other,
                }
            })
            .await?;
        let used = used.max(0) as u64;
        Ok(Outcome {
            allowed: allowed == 1,
            remaining: tau_us.saturating_sub(used) / interval_us,
            reset_after: used * 1000,
            retry_after: retry.max(0) as u64 * 1000,
        })
    }
}
