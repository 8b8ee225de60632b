//! A key-value store with time-to-live: in process by default, shared through Redis.
//!
//! Both backends have the same semantics: values are bytes; a `ttl` makes a key disappear at
//! exactly that time (reads past the deadline never see it); `list(prefix)` returns live keys in
//! sorted order. A Redis store may memoise reads per node ([`memo`]).

pub mod memo;
mod memory;
mod redis;

pub use memory::MemoryKv;
pub use redis::RedisKv;
