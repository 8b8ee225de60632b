//! HTTP message types and the strict HTTP/1.1 request parser.
//!
//! The types are built on the `http` crate (`HeaderMap`, `Method`, `Uri`, `StatusCode`) because
//! those are what hyper hands the server: a request parsed by [`parse_request`] and one accepted by
//! the server are the same Rust value, so every policy sees one representation.

pub mod canonical;
mod chunked;
pub mod framing;
mod headers;
mod parse;
mod request;
mod response;
pub(crate) mod token;

pub use headers::{no_controls, FieldName, Headers, Values};
pub use parse::{parse_request, Limits, Parsed};
pub use request::{uri_path, EdgeInfo, GeoInfo, Request, Url};
pub use response::{redirect, Response};
