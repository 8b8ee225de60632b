//! [`Body`]: the body of every response the server sends and of every request it forwards.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Limited;
use hyper::body::{Frame, Incoming, SizeHint};

use super::upstream::OriginBody;
use crate::compress::{Encoder, Slot};

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A whole body, the origin's body streaming down, or the client's body streaming up (bounded).
/// An enum rather than a boxed trait object: no allocation and no dynamic call per message.
pub enum Body {
    /// A body in memory (None once sent, or when empty).
    Full(Option<Bytes>),
    /// The origin's response body.
    Origin(OriginBody<Body>),
    /// The client's request body, at most the configured size.
    Upload(Limited<Incoming>),
    /// Bytes already read (a cache fill that found the response too large to store), then the
    /// rest of the body as it streams.
    Prefixed(Option<Bytes>, Box<Body>),
    /// Another body, compressed as it streams.
    Compressed(Box<Compressing>),
}

/// A body compressed as it streams: each piece is fed to the encoder and what it produces is
/// sent; when the inner body pauses (nothing ready), what was written is flushed so a slow
/// stream (server-sent events, a long poll) reaches the client without waiting for the next
/// block.
pub struct Compressing {
    inner: Body,
    encoder: Encoder,
    /// The stream's place among its rule's concurrent streams.
    _slot: Slot,
    /// Written since the last output.
    dirty: bool,
    /// The stream is finished (and its trailers, if any, wait in `trailers`).
    done: bool,
    trailers: Option<http::HeaderMap>,
}

impl Compressing {
    /// `inner`, compressed by `encoder`, holding `slot` until the body is dropped.
    pub fn new(inner: Body, encoder: Encoder, slot: Slot) -> Compressing {
        Compressing {
            inner,
            encoder,
            _slot: slot,
            dirty: false,
            done: false,
            trailers: None,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            let out = match hyper::body::Body::poll_frame(Pin::new(&mut self.inner), cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.dirty = true;
                        self.encoder.write(&data)
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        continue;
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    self.encoder.finish()
                }
                Poll::Pending if self.dirty => {
                    self.dirty = false;
                    match self.encoder.flush() {
                        Ok(out) if out.is_empty() => return Poll::Pending,
                        other => other,
                    }
                }
                Poll::Pending => return Poll::Pending,
            };
            match out {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }
}

impl Body {
    /// A body in memory.
    pub fn full(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body::Full((!b.is_empty()).then_some(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Body::Origin(o) => Pin::new(o)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))),
            Body::Upload(l) => Pin::new(l).poll_frame(cx),
            Body::Prefixed(head, rest) => match head.take() {
                Some(h) => Poll::Ready(Some(Ok(Frame::data(h)))),
                None => Pin::new(&mut **rest).poll_frame(cx),
            },
            Body::Compressed(c) => c.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Origin(o) => o.is_end_stream(),
            Body::Upload(l) => l.is_end_stream(),
            Body::Prefixed(head, rest) => head.is_none() && rest.is_end_stream(),
            Body::Compressed(c) => c.done && c.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Origin(o) => o.size_hint(),
            Body::Upload(l) => l.size_hint(),
            Body::Prefixed(head, rest) => {
                let n = head.as_ref().map_or(0, |h| h.len() as u64);
                let r = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(r.lower() + n);
                if let Some(u) = r.upper() {
                    hint.set_upper(u + n);
                }
                hint
            }
            Body::Compressed(_) => SizeHint::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn a_full_body_is_one_frame_and_an_empty_one_none() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let b = Body::full("hello");
        assert_eq!(hyper::body::Body::size_hint(&b).exact(), Some(5));
        assert_eq!(rt.block_on(b.collect()).unwrap().to_bytes(), "hello");
        let empty = Body::full(Bytes::new());
        assert!(hyper::body::Body::is_end_stream(&empty));
    }
}
