//! edgecore-core: the engine of edgecore, in pure Rust (no Python).
//!
//! Each module is one domain of the edge pipeline; this file is only the index.

pub mod auth;
pub mod cache;
pub mod classify;
pub mod client;
pub mod clock;
pub mod compress;
pub mod error;
pub mod geo;
pub mod http;
pub mod kv;
pub mod limit;
pub mod memo;
pub mod rt;
pub mod server;
pub mod store;

pub use error::{Error, ErrorKind, ErrorSource, Result};
