//! The response cache.
//!
//! - [`store`]: a sharded LRU bounded by bytes, with expiry (the `ResponseCache` of the API).
//! - [`policy`]: RFC 9111 decisions as pure functions: what may be stored, for how long.
//! - [`http_cache`]: the shared HTTP cache the server uses: variants, Age/X-Cache, stale
//!   serving, conditional revalidation, invalidation.
//! - [`key`]: cache keys with normalized queries and dimensions.
//! - [`coalesce`]: one origin fetch for concurrent misses of one key.
//! - [`asks`]: which of the fields the cache acts on a request carries, in one pass.
//! - [`ranges`]: a client's conditional or `Range` request answered from a stored response.

pub mod asks;
pub mod coalesce;
pub mod http_cache;
pub mod key;
pub mod policy;
pub mod ranges;
pub mod store;

pub use asks::Asks;
pub use http_cache::{Entry, HttpCache, Lookup};
pub use key::{cache_key, url_key, KeyOptions};
pub use policy::{storable, StoreDecision};
pub use store::{ShardedLru, Weighted};
