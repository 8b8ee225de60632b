//! Shared state stores. [`RedisConn`] is the one Redis connection (to a server or a Redis
//! Cluster) the limiter, the KV store and purge publishing use: multiplexed (one TCP connection serves every concurrent command), every command bounded
//! by a timeout, and a circuit breaker so that a dead or slow Redis costs callers nothing.

mod redis_conn;

pub use redis_conn::{pubsub_clients, Conn, RedisConn, Target};
