//! The per-request context that the phases read and write ([`RequestCtx`]), and what a phase
//! returns ([`Flow`]).

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body::Body;
use super::metrics::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::http::Request;
use crate::limit::Decision as RateDecision;

/// What a phase decided: go on to the next phase, or answer the client with this response
/// (which ends the pipeline).
pub enum Flow {
    /// The next phase runs.
    Continue,
    /// The pipeline ends with this response.
    Answer(http::Response<Body>),
}

/// The client's request body: not read yet (it streams to the origin), or read (a Python
/// handler or a cache fill needed it whole).
pub enum BodyState {
    /// Still on the connection.
    Unread(Incoming),
    /// Read into memory.
    Read(Bytes),
}

impl BodyState {
    /// The body, read whole (413 past `max` bytes).
    pub async fn read(self, max: usize) -> Result<Bytes> {
        match self {
            BodyState::Read(b) => Ok(b),
            BodyState::Unread(inc) => match Limited::new(inc, max).collect().await {
                Ok(c) => Ok(c.to_bytes()),
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    Err(Error::downstream(ErrorKind::BodyTooLarge, "request body too large"))
                }
                Err(e) => Err(Error::bad_request(format!("reading the request body: {e}"))),
            },
        }
    }
}

/// What the cache phase did with a request (the `X-Cache` header and the metrics outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache, fresh.
    Hit,
    /// Served stale while a background refresh runs.
    Stale,
    /// The origin confirmed the stored copy (304).
    Revalidated,
    /// Fetched from the origin (and stored if storable).
    Miss,
    /// The request may not use the cache (its own Cache-Control, Authorization, …).
    Bypass,
}

impl CacheStatus {
    /// The `X-Cache` value.
    pub fn as_header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        })
    }

    /// Whether the response is a stored copy, which carries its `X-Cache` already
    /// ([`crate::cache::HttpCache`] sets it on every copy it serves).
    pub fn from_store(self) -> bool {
        matches!(self, CacheStatus::Hit | CacheStatus::Stale | CacheStatus::Revalidated)
    }

    /// The metrics outcome of a response the cache phase produced itself (None for a bypass:
    /// whatever produced the response says).
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            CacheStatus::Hit => Some(Outcome::CacheHit),
            CacheStatus::Stale => Some(Outcome::CacheStale),
            CacheStatus::Revalidated => Some(Outcome::CacheRevalidated),
            CacheStatus::Miss => Some(Outcome::CacheMiss),
            CacheStatus::Bypass => None,
        }
    }
}

/// A W3C trace ID: 32 lower-case hex digits, kept without an allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 32]);

impl TraceId {
    /// The ID as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate-limit decision, with what its rule's responses carry.
pub struct RateNote {
    /// The decision.
    pub decision: RateDecision,
    /// Which `RateLimit` fields the rule sends.
    pub fields: super::respond::RateFields,
    /// The rule's `RateLimit-Policy` value (written once, when the plan was built).
    pub policy: HeaderValue,
}

/// What the phases learned that shapes the response, applied when it leaves (whatever answered).
#[derive(Default)]
pub struct Notes {
    /// What answered (None: a rejection or an error, told apart by the status).
    pub outcome: Option<Outcome>,
    /// The client IP the edge settled on (the access log's).
    pub client_ip: Option<IpAddr>,
    /// Cookies to set (A/B assignment).
    pub set_cookies: Vec<HeaderValue>,
    /// The last rate-limit decision that let the request through (its `RateLimit-*` headers).
    pub rate: Option<RateNote>,
    /// What the cache did.
    pub cache_status: Option<CacheStatus>,
    /// Response-header templates, rendered while the request was at hand.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Fields every response gets, whatever answered it (rejections included): the request ID,
    /// CORS fields, HSTS. `Vary` is appended to the response's own, the others replace.
    pub always: Vec<(HeaderName, HeaderValue)>,
    /// The request ID (`app.request_ids()`), for the access log.
    pub request_id: Option<HeaderValue>,
    /// The W3C trace ID, for the access log.
    pub trace_id: Option<TraceId>,
    /// What policies in shadow mode decided: (policy, would it have rejected), for the metrics
    /// and the access log.
    pub shadow: Vec<(super::metrics::Policy, bool)>,
    /// The request carries a credential other than `Authorization` (a JWT cookie): like
    /// `Authorization` (RFC 9111 §3.5), it keeps the request away from the shared cache.
    pub credentialed: bool,
    /// The compression rule on the request's path and the coding chosen for the client.
    pub compress: Option<CompressChoice>,
    /// The explain trace, when the request asked for one and may have it.
    pub trace: Option<Box<super::trace::Trace>>,
}

/// A compression rule ([`crate::server::plan::Plan::compress`]) applies: the coding the client's
/// `Accept-Encoding` settled on (None: the response goes as it is, with `Vary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressChoice {
    /// The rule's index.
    pub rule: usize,
    /// The coding, if any.
    pub coding: Option<crate::compress::Coding>,
}

/// Dev-mode overrides read from `x-edge-dev-*` headers (only in dev mode; the headers are never
/// forwarded either way).
#[derive(Default)]
pub struct DevOverrides {
    /// `x-edge-dev-client-ip`.
    pub client_ip: Option<IpAddr>,
    /// `x-edge-dev-country` (upper-cased).
    pub country: Option<String>,
    /// `x-edge-dev-bot` (`1`/`true` or anything else).
    pub bot: Option<bool>,
}

/// One request on its way through the phases.
pub struct RequestCtx {
    /// The request as the policies see it, with what the edge learned about it.
    pub request: Request,
    /// Its body.
    pub body: BodyState,
    /// The socket peer.
    pub peer: IpAddr,
    /// The client's connection, for a WebSocket upgrade request (proxied to the origin).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The upgrade came as an HTTP/2 extended CONNECT (RFC 8441), with the key the edge sent
    /// the origin: answered 200, not 101, once the origin's accept matches.
    pub extended_connect: Option<String>,
    /// The `X-Forwarded-For` chain received from a trusted peer (None from anyone else: the
    /// origin then gets the client IP alone); see [`RequestCtx::prior_xff`].
    pub forwarded_chain: Option<ForwardedChain>,
    /// Dev-mode overrides.
    pub dev: DevOverrides,
    /// What shapes the response.
    pub notes: Notes,
}

impl RequestCtx {
    /// A context for `request` from `peer`.
    pub fn new(request: Request, body: BodyState, peer: IpAddr) -> RequestCtx {
        RequestCtx {
            request,
            body,
            peer,
            upgrade: None,
            extended_connect: None,
            forwarded_chain: None,
            dev: DevOverrides::default(),
            notes: Notes::default(),
        }
    }

    /// Takes the request, its body and the trusted forwarding chain out, for the phase that
    /// answers with them (the cache, a handler or the origin); the context keeps its notes.
    pub fn take_exchange(&mut self) -> (Request, BodyState, Option<String>) {
        let placeholder = Request::new(http::Method::GET, http::Uri::default());
        (
            std::mem::replace(&mut self.request, placeholder),
            std::mem::replace(&mut self.body, BodyState::Read(Bytes::new())),
            self.prior_xff(),
        )
    }

    /// The `X-Forwarded-For` chain to send, taken out of the context: the one received from a
    /// trusted peer with the peer appended (None from anyone else).
    pub fn prior_xff(&mut self) -> Option<String> {
        self.forwarded_chain.take().and_then(ForwardedChain::text)
    }
}

/// The `X-Forwarded-For` fields a trusted peer sent and the peer's address, kept as the
/// field values themselves (a reference count each) and written out as one chain only for a
/// request that goes on to the origin: a cache hit or an answer at the edge never pays for it.
pub struct ForwardedChain {
    first: http::HeaderValue,
    more: Vec<http::HeaderValue>,
    peer: IpAddr,
}

impl ForwardedChain {
    /// The chain of `values` (in order), received from `peer`; None without a field.
    pub fn new(mut values: impl Iterator<Item = http::HeaderValue>, peer: IpAddr) -> Option<ForwardedChain> {
        let first = values.next()?;
        Some(ForwardedChain {
            first,
            more: values.collect(),
            peer,
        })
    }

    /// The fields' values, in order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        std::iter::once(&self.first)
            .chain(&self.more)
            .map(http::HeaderValue::as_bytes)
    }

    /// `v1, v2, peer` (a value that is not UTF-8 written lossily); None when the fields are
    /// all empty.
    fn text(self) -> Option<String> {
        let values = std::iter::once(&self.first).chain(&self.more);
        // One buffer, sized for the values, the separators and the peer's address.
        let mut chain = String::with_capacity(values.clone().map(|v| v.len() + 2).sum::<usize>() + 40);
        for (i, v) in values.enumerate() {
            if i > 0 {
                chain.push_str(", ");
            }
            chain.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
        if chain.is_empty() {
            return None;
        }
        chain.push_str(", ");
        crate::geo::client_ip::push_ip(&mut chain, self.peer);
        Some(chain)
    }
}
