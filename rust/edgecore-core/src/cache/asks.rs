//! What a request asks of the cache beyond its URL: the fields the cache acts on, found in one
//! pass over the request's field names. The common request carries none of them, and then
//! needs no lookup of any (a hashed lookup per field and per question would cost a cache hit
//! several hundred instructions).

use crate::http::{Headers, Request};

/// Which of the fields the cache acts on a request carries (by name; the values are read only
/// where a name is present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asks {
    /// `Cache-Control` or `Pragma`: the request's own cache directives.
    pub directives: bool,
    /// `Authorization`.
    pub authorization: bool,
    /// `Content-Length` or `Transfer-Encoding`: the request may have a body.
    pub framing: bool,
    /// `If-None-Match`, `If-Modified-Since` or `Range`: an answer for this client alone.
    pub conditional: bool,
}

impl Asks {
    /// Every question open: each is then answered by looking its fields up.
    pub const ALL: Asks = Asks {
        directives: true,
        authorization: true,
        framing: true,
        conditional: true,
    };

    /// What `request` carries. The raw form (a request parsed by `parse_request`, not yet a
    /// map) answers [`Asks::ALL`].
    pub fn of(request: &Request) -> Asks {
        let Headers::Map(map) = &request.headers else {
            return Asks::ALL;
        };
        let mut asks = Asks {
            directives: false,
            authorization: false,
            framing: false,
            conditional: false,
        };
        // Names of a map are lower case; a match on the text compares lengths first.
        for name in map.keys() {
            match name.as_str() {
                "cache-control" | "pragma" => asks.directives = true,
                "authorization" => asks.authorization = true,
                "content-length" | "transfer-encoding" => asks.framing = true,
                "if-none-match" | "if-modified-since" | "range" => asks.conditional = true,
                _ => {}
            }
        }
        asks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asks(fields: &[(&str, &str)]) -> Asks {
        let mut m = http::HeaderMap::new();
        for (n, v) in fields {
            m.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut r = Request::new(http::Method::GET, "/".parse().unwrap());
        r.headers = Headers::Map(m);
        Asks::of(&r)
    }

    #[test]
    fn each_field_opens_its_question_and_no_other() {
        let none = asks(&[("host", "a"), ("accept", "*/*"), ("user-agent", "x")]);
        assert_eq!(none, asks(&[]));
        assert!(!none.directives && !none.authorization && !none.framing && !none.conditional);
        for (field, which) in [
            ("Cache-Control", 0),
            ("pragma", 0),
            ("authorization", 1),
            ("content-length", 2),
            ("Transfer-Encoding", 2),
            ("if-none-match", 3),
            ("If-Modified-Since", 3),
            ("range", 3),
        ] {
            let a = asks(&[("host", "a"), (field, "1")]);
            let got = [a.directives, a.authorization, a.framing, a.conditional];
            let want: Vec<bool> = (0..4).map(|i| i == which).collect();
            assert_eq!(got.to_vec(), want, "{field}");
        }
    }

    #[test]
    fn the_raw_form_leaves_every_question_open() {
        let buf = bytes::Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let parsed = crate::http::parse_request(&buf, &Default::default()).unwrap();
        assert_eq!(Asks::of(&parsed.request), Asks::ALL);
    }
}
