//! [`Headers`]: the case-insensitive multi-map of a request, in two representations.
//!
//! - `Raw`: what the parser produces — the message buffer (one `Bytes`, shared) and the offsets of
//!   each name and value. Building it costs one small `Vec` push per field: no allocation per
//!   name, no re-validation of bytes httparse already validated, no hashing. Most requests are only
//!   *read* by the pipeline (Host, Authorization, User-Agent…), so most never leave this form.
//! - `Map`: an `http::HeaderMap`, what hyper hands the server and what a mutation produces. The
//!   first mutation of a `Raw` converts it (names and values are already valid, so it cannot fail).
//!
//! Invariant: both forms hold only valid field names (tchar) and values (no CR, LF, NUL or other
//! controls but HTAB), so converting between them never fails and serialising them is safe.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Offsets of one field inside the raw buffer.
#[derive(Debug, Clone, Copy)]
struct RawField {
    name: (u32, u32),
    value: (u32, u32),
}

/// A case-insensitive multi-map of header fields.
#[derive(Debug, Clone)]
pub enum Headers {
    /// Fields as offsets into the parsed message (names keep their original case).
    Raw {
        /// The message bytes the offsets point into.
        buf: Bytes,
        /// One entry per field, in order.
        fields: Vec<RawFieldRef>,
    },
    /// An owned map (lower-case names).
    Map(HeaderMap),
}

/// An opaque field reference of the raw form.
#[derive(Debug, Clone, Copy)]
pub struct RawFieldRef(RawField);

/// A field name to look up: a `&str` (parsed, in map form, on every lookup) or a known
/// [`HeaderName`] (`&http::header::HOST`, or a name the plan parsed once), which is not.
pub trait FieldName: Copy {
    /// The name as text (any case).
    fn text(&self) -> &str;
    /// Its first value in `map`.
    fn first<'m>(&self, map: &'m HeaderMap) -> Option<&'m HeaderValue>;
    /// Its values in `map`.
    fn all<'m>(&self, map: &'m HeaderMap) -> http::header::GetAll<'m, HeaderValue>;
}

impl FieldName for &str {
    fn text(&self) -> &str {
        self
    }
    fn first<'m>(&self, map: &'m HeaderMap) -> Option<&'m HeaderValue> {
        map.get(*self)
    }
    fn all<'m>(&self, map: &'m HeaderMap) -> http::header::GetAll<'m, HeaderValue> {
        map.get_all(*self)
    }
}

impl FieldName for &HeaderName {
    fn text(&self) -> &str {
        self.as_str()
    }
    fn first<'m>(&self, map: &'m HeaderMap) -> Option<&'m HeaderValue> {
        map.get(*self)
    }
    fn all<'m>(&self, map: &'m HeaderMap) -> http::header::GetAll<'m, HeaderValue> {
        map.get_all(*self)
    }
}

/// The values of one field, in order ([`Headers::get_all`]).
pub enum Values<'a, N> {
    /// From the map form.
    Map(http::header::ValueIter<'a, HeaderValue>),
    /// From the raw form: the fields left to look at.
    Raw {
        /// The message bytes.
        buf: &'a Bytes,
        /// The fields not looked at yet.
        fields: std::slice::Iter<'a, RawFieldRef>,
        /// The name looked for.
        name: N,
    },
}

impl<'a, N: FieldName> Iterator for Values<'a, N> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Values::Map(it) => it.next().map(HeaderValue::as_bytes),
            Values::Raw { buf, fields, name } => fields.find_map(|f| {
                let (n, v) = slices(buf, f);
                n.eq_ignore_ascii_case(name.text().as_bytes()).then_some(v)
            }),
        }
    }
}

impl Default for Headers {
    fn default() -> Self {
        Headers::Map(HeaderMap::new())
    }
}

impl From<HeaderMap> for Headers {
    fn from(m: HeaderMap) -> Self {
        Headers::Map(m)
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.to_map() == other.to_map()
    }
}

impl Headers {
    /// An empty raw form over `buf`; fields are added with [`Headers::push_raw`].
    pub(crate) fn raw(buf: Bytes, capacity: usize) -> Self {
        Headers::Raw {
            buf,
            fields: Vec::with_capacity(capacity),
        }
    }

    /// Adds a field whose name and value are slices of the raw buffer (already validated).
    pub(crate) fn push_raw(&mut self, name: &[u8], value: &[u8]) {
        if let Headers::Raw { buf, fields } = self {
            let base = buf.as_ptr() as usize;
            let off = |s: &[u8]| {
                let start = s.as_ptr() as usize - base;
                (start as u32, (start + s.len()) as u32)
            };
            fields.push(RawFieldRef(RawField {
                name: off(name),
                value: off(value),
            }));
        }
    }

    /// The first value of `name` (case-insensitive). A `&HeaderName` (a constant such as
    /// `http::header::HOST`) is looked up without parsing the name again; a `&str` is parsed on
    /// each call.
    pub fn get<N: FieldName>(&self, name: N) -> Option<&[u8]> {
        match self {
            Headers::Map(m) => name.first(m).map(HeaderValue::as_bytes),
            Headers::Raw { buf, fields } => fields.iter().find_map(|f| {
                let (n, v) = slices(buf, f);
                n.eq_ignore_ascii_case(name.text().as_bytes()).then_some(v)
            }),
        }
    }

    /// The first value of `name` as a string, if it is visible ASCII.
    pub fn get_str<N: FieldName>(&self, name: N) -> Option<&str> {
        self.get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|s| no_controls(s.as_bytes()))
    }

    /// Every value of `name`, in order (no allocation).
    pub fn get_all<N: FieldName>(&self, name: N) -> Values<'_, N> {
        match self {
            Headers::Map(m) => Values::Map(name.all(m).into_iter()),
            Headers::Raw { buf, fields } => Values::Raw {
                buf,
                fields: fields.iter(),
                name,
            },
        }
    }

    /// Whether `name` is present.
    pub fn contains<N: FieldName>(&self, name: N) -> bool {
        self.get(name).is_some()
    }

    /// All (name, value) pairs in order. Raw names keep their case; map names are lower-case.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &[u8])> + '_> {
        match self {
            Headers::Map(m) => Box::new(m.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))),
            Headers::Raw { buf, fields } => Box::new(fields.iter().map(move |f| {
                let (n, v) = slices(buf, f);
                // Names were checked to be tchar (ASCII) by the parser, so this never fails.
                (std::str::from_utf8(n).unwrap_or(""), v)
            })),
        }
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        match self {
            Headers::Map(m) => m.len(),
            Headers::Raw { fields, .. } => fields.len(),
        }
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An owned `HeaderMap` with the same fields (lower-case names).
    pub fn to_map(&self) -> HeaderMap {
        match self {
            Headers::Map(m) => m.clone(),
            Headers::Raw { buf, fields } => {
                let mut m = HeaderMap::with_capacity(fields.len());
                for f in fields {
                    let (n, _) = slices(buf, f);
                    let (vs, ve) = f.0.value;
                    // Both were validated by the parser (tchar names, field-value bytes).
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(n),
                        HeaderValue::from_maybe_shared(buf.slice(vs as usize..ve as usize)),
                    ) {
                        m.append(name, value);
                    }
                }
                m
            }
        }
    }

    /// The map form, converting a raw form first (for mutation).
    pub fn as_map_mut(&mut self) -> &mut HeaderMap {
        if let Headers::Raw { .. } = self {
            *self = Headers::Map(self.to_map());
        }
        match self {
            Headers::Map(m) => m,
            Headers::Raw { .. } => unreachable!("converted above"),
        }
    }

    /// Consumes the headers into a `HeaderMap`.
    pub fn into_map(self) -> HeaderMap {
        match self {
            Headers::Map(m) => m,
            raw => raw.to_map(),
        }
    }
}

fn slices<'a>(buf: &'a Bytes, f: &RawFieldRef) -> (&'a [u8], &'a [u8]) {
    let RawField {
        name: (ns, ne),
        value: (vs, ve),
    } = f.0;
    (&buf[ns as usize..ne as usize], &buf[vs as usize..ve as usize])
}

/// Whether `b` has no control byte other than tab (every byte >= 0x20 or `\t`). Eight bytes at a
/// time: a session token or cookie is checked on every request, and a byte loop costs a few
/// instructions per byte.
pub fn no_controls(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let plain = |c: &[u8]| c.iter().all(|&b| b >= 0x20 || b == b'\t');
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        // Some byte is below 0x20 (exact for thresholds up to 0x80); then look closer (a tab).
        if x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0 && !plain(c) {
            return false;
        }
    }
    plain(chunks.remainder())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_controls_agrees_with_a_byte_loop() {
        let naive = |b: &[u8]| b.iter().all(|&b| b >= 0x20 || b == b'\t');
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = Vec::new();
        for len in 0..200usize {
            for _ in 0..50 {
                buf.clear();
                for _ in 0..len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly visible ASCII, with tabs, controls, DEL and obs-text mixed in.
                    let b = match x % 16 {
                        0 => (x >> 8) as u8 % 0x20,
                        1 => b'\t',
                        2 => 0x7f,
                        3 => 0x80 | (x >> 8) as u8,
                        _ => 0x20 + (x >> 8) as u8 % 0x5f,
                    };
                    buf.push(b);
                }
                assert_eq!(no_controls(&buf), naive(&buf), "{buf:?}");
            }
        }
        for c in 0u8..=255 {
            for pos in 0..17 {
                let mut v = vec![b'a'; 17];
                v[pos] = c;
                assert_eq!(no_controls(&v), naive(&v), "byte {c:#x} at {pos}");
            }
        }
    }

    fn raw() -> Headers {
        let buf = Bytes::from_static(b"Host: a\r\nX-Multi: 1\r\nx-multi: 2\r\n");
        let mut h = Headers::raw(buf.clone(), 3);
        h.push_raw(&buf[0..4], &buf[6..7]);
        h.push_raw(&buf[9..16], &buf[18..19]);
        h.push_raw(&buf[21..28], &buf[30..31]);
        h
    }

    #[test]
    fn raw_and_map_answer_alike() {
        let r = raw();
        let m = Headers::Map(r.to_map());
        for h in [&r, &m] {
            assert_eq!(h.get("HOST"), Some(&b"a"[..]));
            assert_eq!(h.get_all("x-multi").collect::<Vec<_>>(), vec![&b"1"[..], b"2"]);
            assert_eq!(h.len(), 3);
            assert!(!h.contains("cookie"));
        }
        assert_eq!(r, m);
    }

    #[test]
    fn mutation_converts_to_map() {
        let mut h = raw();
        h.as_map_mut().insert("x-new", HeaderValue::from_static("v"));
        assert!(matches!(h, Headers::Map(_)));
        assert_eq!(h.get("X-New"), Some(&b"v"[..]));
        assert_eq!(h.get("host"), Some(&b"a"[..]));
    }
}
