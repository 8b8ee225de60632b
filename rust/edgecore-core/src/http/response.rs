//! The response type: status, headers and a body held as `Bytes` (cheap to clone into a cache).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::{Error, Result};

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// Header fields.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with the given status and body and no headers.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Result<Self> {
        let status = StatusCode::from_u16(status)
            .map_err(|_| Error::config(format!("invalid HTTP status {status}: expected 100..=999")))?;
        Ok(Response {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        })
    }

    /// A response with the given status and a plain-text body; used for edge rejections.
    pub fn text(status: StatusCode, body: &'static str) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Response {
            status,
            headers,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    /// The number of bytes this response holds (body plus header names and values), as charged
    /// against a cache's byte budget.
    pub fn weight(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
        self.body.len() + headers + 64
    }
}

/// Statuses a redirect may use.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// A redirect to `location` with `status` (301, 302, 303, 307 or 308).
pub fn redirect(location: &str, status: u16) -> Result<Response> {
    if !REDIRECT_STATUSES.contains(&status) {
        return Err(Error::config(format!(
            "redirect status must be one of 301, 302, 303, 307, 308; got {status}"
        )));
    }
    let value = HeaderValue::from_str(location).map_err(|_| {
        Error::config(format!(
            "redirect location {location:?} contains characters not allowed in a header"
        ))
    })?;
    let mut r = Response::new(status, Bytes::new())?;
    r.headers.insert(http::header::LOCATION, value);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_validates() {
        let r = redirect("/login", 307).unwrap();
        assert_eq!(r.status.as_u16(), 307);
        assert_eq!(r.headers["location"], "/login");
        assert!(redirect("/x", 200).unwrap_err().context.contains("301"));
        assert!(redirect("/x\r\nSet-Cookie: a", 302).is_err());
    }

    #[test]
    fn weight_counts_body_and_headers() {
        let mut r = Response::new(200, vec![0u8; 1000]).unwrap();
        let w0 = r.weight();
        r.headers.insert("x-a", HeaderValue::from_static("b"));
        assert!(r.weight() > w0 && w0 >= 1000);
    }
}
