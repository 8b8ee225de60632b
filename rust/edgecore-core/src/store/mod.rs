//! Shared state stores. [`RedisConn`] is the one Redis connection the limiter and the KV store
//! use: multiplexed (one TCP connection serves every concurrent command), every command bounded
//! by a timeout, and a circuit breaker so that a dead or slow Redis costs callers nothing.

mod redis_conn;

pub use redis_conn::RedisConn;
