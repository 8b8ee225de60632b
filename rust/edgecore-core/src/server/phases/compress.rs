//! Compression (`app.compress`): on a rule's paths, [`negotiate`] settles the coding for the
//! client from `Accept-Encoding` (RFC 9110 §12.5.3) and states it as the request's
//! `Accept-Encoding` (the one coding, or `identity`), so the origin, the cache's `Vary` and every
//! later step see one of at most four values; [`apply`] then compresses what answered, as it
//! streams, and [`apply_whole`] a body the cache is about to store (so a hit costs no
//! compression: each coding is a variant of the entry).
//!
//! At most the rule's `max_streams` responses are compressed as they stream at once (each holds
//! about a megabyte of codec state while its client reads); beyond that a response goes
//! uncompressed. A response is compressed only when all of these hold: a body is allowed (not 1xx, 204, 304
//! or a HEAD's), it is not a range (206, `Content-Range`), not encoded already, not marked
//! `no-transform`, its media type is one of the rule's and it is not declared smaller than
//! `min_bytes`. Such a response always gets `Vary: Accept-Encoding`, compressed or not (another
//! client would get another coding); a compressed one loses `Content-Length` and
//! `Accept-Ranges`, and a strong `ETag` becomes weak (the bytes differ from the identity's).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::compress::{negotiate as choose, Coding, Encoder, Slot};
use crate::error::{Error, ErrorKind, ErrorSource, Result};
use crate::http::Response;
use crate::server::body::{Body, Compressing};
use crate::server::ctx::{CompressChoice, RequestCtx};
use crate::server::plan::edge::CompressRule;
use crate::server::plan::Plan;

/// A body at least this large is compressed off the runtime's threads (a cache fill).
const BLOCKING_BYTES: usize = 256 * 1024;

/// The phase: the first compression rule on the request's path, and the coding its client
/// accepts; the request's `Accept-Encoding` then states that choice.
pub fn negotiate(plan: &Plan, ctx: &mut RequestCtx) {
    let path = ctx.request.path();
    let Some(rule) = plan.compress.iter().position(|r| r.paths.matches(path)) else {
        return;
    };
    let headers = ctx.request.headers.as_map_mut();
    // Several fields are one list; one field (the common case) is read in place.
    let fields = headers.get_all(header::ACCEPT_ENCODING);
    let mut values = fields.iter().filter_map(|v| v.to_str().ok());
    let coding = match (values.next(), values.next()) {
        // No field: no coding (what `choose` makes of an empty list, without parsing one).
        (None, _) => None,
        (Some(one), None) => choose(one, &plan.compress[rule].codings),
        (Some(first), Some(second)) => {
            let mut accept = [first, second].join(",");
            for v in values {
                accept.push(',');
                accept.push_str(v);
            }
            choose(&accept, &plan.compress[rule].codings)
        }
    };
    let stated = coding.map_or("identity", Coding::token);
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(stated));
    ctx.notes.compress = Some(CompressChoice { rule, coding });
}

/// Whether `rule` compresses a response with this status and these fields, to a `method`
/// request (`len`: the body's size when known).
fn eligible(rule: &CompressRule, method: &Method, status: StatusCode, h: &HeaderMap, len: Option<u64>) -> bool {
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT;
    if bodiless || h.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    if h.get(header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return false;
    }
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    // A HEAD's body is empty: the declared length is the one that counts.
    let len = if *method == Method::HEAD {
        declared
    } else {
        len.or(declared)
    };
    if len.is_some_and(|n| n < rule.min_bytes) {
        return false;
    }
    h.get(header::CONTENT_TYPE)
        .is_some_and(|t| rule.types.contains(t.as_bytes()))
        && !h.get_all(header::CACHE_CONTROL).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
        })
}

/// Adds `Accept-Encoding` to `Vary` (unless there, or `Vary: *`).
fn vary(h: &mut HeaderMap) {
    let listed = h.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|n| {
            let n = n.trim_ascii();
            n == b"*" || n.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !listed {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The fields of a response now encoded with `coding`.
fn encoded(h: &mut HeaderMap, coding: Coding) {
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    if let Some(tag) = h.get(header::ETAG) {
        if !tag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(tag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                h.insert(header::ETAG, v);
            }
        }
    }
}

/// `resp` compressed as it streams, when `choice`'s rule compresses it; with `Vary` when it
/// would be compressed for another client.
pub fn apply(
    plan: &Plan,
    choice: CompressChoice,
    method: &Method,
    mut resp: http::Response<Body>,
) -> http::Response<Body> {
    let rule = &plan.compress[choice.rule];
    let len = hyper::body::Body::size_hint(resp.body()).exact();
    if !eligible(rule, method, resp.status(), resp.headers(), len) {
        return resp;
    }
    vary(resp.headers_mut());
    let Some(coding) = choice.coding else { return resp };
    if *method == Method::HEAD {
        encoded(resp.headers_mut(), coding);
        return resp;
    }
    // Over the rule's concurrent streams, or the codec's set-up failing (memory): the response
    // goes as it is, correct and uncompressed, so codec memory stays bounded.
    let Some(slot) = Slot::take(&rule.streams, rule.max_streams) else {
        return resp;
    };
    let Ok(encoder) = Encoder::new(coding, rule.level(coding), len) else {
        return resp;
    };
    encoded(resp.headers_mut(), coding);
    resp.map(|body| Body::Compressed(Box::new(Compressing::new(body, encoder, slot))))
}

/// `resp` (whole, about to be stored by the cache) compressed when `choice`'s rule compresses
/// it; a large body is compressed on a blocking thread.
pub async fn apply_whole(plan: &Plan, choice: CompressChoice, method: &Method, mut resp: Response) -> Result<Response> {
    let rule = &plan.compress[choice.rule];
    let len = Some(resp.body.len() as u64).filter(|_| *method != Method::HEAD);
    if !eligible(rule, method, resp.status, &resp.headers, len) {
        return Ok(resp);
    }
    vary(&mut resp.headers);
    let Some(coding) = choice.coding else { return Ok(resp) };
    if *method != Method::HEAD {
        let (level, body) = (rule.level(coding), std::mem::take(&mut resp.body));
        let z = match body.len() >= BLOCKING_BYTES {
            true => tokio::task::spawn_blocking(move || crate::compress::compress(coding, level, &body))
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, ErrorSource::Internal, e.to_string()))?,
            false => crate::compress::compress(coding, level, &body),
        };
        resp.body = Bytes::from(z.map_err(|e| Error::new(ErrorKind::Internal, ErrorSource::Internal, e.to_string()))?);
    }
    encoded(&mut resp.headers, coding);
    Ok(resp)
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
