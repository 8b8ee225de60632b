//! The canonical form of a request path: what every policy matches and what the origin receives.
//!
//! Origins normalise paths before routing (`//api/x`, `/%61pi/x` and `/api/./x` all reach
//! `/api/x` in Starlette, Flask, Express or a Java servlet), so a policy that matched the raw path
//! could be walked around. Here the path is brought to one form first (RFC 3986 §6.2.2):
//!
//! 1. percent-encodings are checked (two hex digits) and written in upper case; those of an
//!    unreserved character (`A-Z a-z 0-9 - . _ ~`) are decoded;
//! 2. an encoded slash or backslash (`%2F`, `%5C`) and a raw backslash follow
//!    [`EscapedSlashes`] (refused by default: origins disagree on what they mean);
//! 3. `;` path parameters follow [`PathParams`] (refused by default: servlet containers strip
//!    them, so `/login;x` reaches `/login` there);
//! 4. dot segments are removed (RFC 3986 §5.2.4, never above the root) and runs of slashes
//!    merged into one.
//!
//! Canonicalising is idempotent, and a path already canonical costs one scan and no allocation.

use std::borrow::Cow;

/// What an encoded slash or backslash (`%2F`, `%5C`, or a raw `\`) in a path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashes {
    /// 400 (the default).
    #[default]
    Reject,
    /// Kept encoded, as one segment (`%2F`, `%5C`).
    Keep,
    /// Decoded into a path separator `/` (and merged like any other).
    Decode,
}

/// What `;` path parameters do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathParams {
    /// 400 (the default).
    #[default]
    Reject,
    /// Removed, from each `;` to the end of its segment.
    Strip,
    /// Kept as part of the segment.
    Keep,
}

/// How paths are canonicalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathPolicy {
    /// Encoded slashes and backslashes.
    pub escaped_slashes: EscapedSlashes,
    /// `;` parameters.
    pub path_params: PathParams,
}

impl EscapedSlashes {
    /// Parses the setting's name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "reject" => Some(Self::Reject),
            "keep" => Some(Self::Keep),
            "decode" => Some(Self::Decode),
            _ => None,
        }
    }
}

impl PathParams {
    /// Parses the setting's name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "reject" => Some(Self::Reject),
            "strip" => Some(Self::Strip),
            "keep" => Some(Self::Keep),
            _ => None,
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` may already be canonical under `policy` (no byte that could change).
fn is_plain(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' => return false,
            b'/' if prev == b'/' => return false,
            // A `.` right after a slash may start a dot segment.
            b'.' if prev == b'/' => {
                let rest = &path[i + 1..];
                if rest.is_empty() || rest[0] == b'/' || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/')) {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

/// The canonical form of `path` (an origin-form path starting with `/`, without its query), or
/// why it is refused. Borrowed when it is already canonical.
pub fn canonical_path(path: &str, policy: PathPolicy) -> Result<Cow<'_, str>, &'static str> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("the path must start with /");
    }
    if is_plain(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // Pass 1: percent-encodings, slashes and parameters, into one buffer.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut in_params = false;
    while i < bytes.len() {
        let b = bytes[i];
        let (byte, width) = match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("invalid percent-encoding in the path");
                };
                (h << 4 | l, 3)
            }
            _ => (b, 1),
        };
        let encoded = width == 3;
        if byte == b'/' && !encoded {
            in_params = false;
            decoded.push(b'/');
        } else if in_params {
            // Dropped with its parameter.
        } else if byte == b'/' || byte == b'\\' {
            match policy.escaped_slashes {
                EscapedSlashes::Reject => return Err("an encoded slash or a backslash in the path"),
                EscapedSlashes::Decode => decoded.push(b'/'),
                EscapedSlashes::Keep if byte == b'/' => decoded.extend_from_slice(b"%2F"),
                EscapedSlashes::Keep => decoded.extend_from_slice(b"%5C"),
            }
        } else if byte == b';' && !encoded {
            match policy.path_params {
                PathParams::Reject => return Err("a ; parameter in the path"),
                PathParams::Strip => in_params = true,
                PathParams::Keep => decoded.push(b';'),
            }
        } else if encoded && !is_unreserved(byte) {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            decoded.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
        } else {
            decoded.push(byte);
        }
        i += width;
    }
    // Pass 2: dot segments and repeated slashes.
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            b"." => trailing = true,
            b".." => {
                out.pop();
                trailing = true;
            }
            b"" => trailing = n == last,
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for s in &out {
        result.push('/');
        // Every byte is ASCII: the input was a &str and only ASCII was written.
        result.push_str(std::str::from_utf8(s).map_err(|_| "the path is not valid UTF-8")?);
    }
    if out.is_empty() || trailing {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

/// Whether `host` is a host name (letters, digits, `-`, `_` and dots, as DNS and IPv4 use) or
/// a bracketed IPv6 literal. Percent-encoding, userinfo and the other sub-delimiters that RFC
/// 3986's reg-name allows are refused: no real host needs them, and they are how a Host smuggles
/// path bytes into cache keys and logs.
pub fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The bytes of a canonical (lower-case) host name: letters, digits, `-`, `.`, `_`.
static LOWER_HOST: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    t
};

/// Whether `digits` (1 to 5 bytes) is a port number.
fn port_ok(digits: &[u8]) -> bool {
    digits.iter().all(u8::is_ascii_digit) && digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// The canonical form of a Host value or target authority (`host[:port]`): validated, the host
/// in lower case. Borrowed when already canonical.
pub fn canonical_host(value: &str) -> Result<Cow<'_, str>, &'static str> {
    // The common case, by table: a lower-case name or IPv4 address, maybe a port.
    let bytes = value.as_bytes();
    let end = memchr::memchr(b':', bytes).unwrap_or(bytes.len());
    let (name, port) = bytes.split_at(end);
    if (1..=253).contains(&name.len()) && name.iter().all(|&b| LOWER_HOST[usize::from(b)]) {
        return match port {
            [] => Ok(Cow::Borrowed(value)),
            [b':', digits @ ..] if (1..=5).contains(&digits.len()) && port_ok(digits) => Ok(Cow::Borrowed(value)),
            _ => Err("invalid port in Host"),
        };
    }
    let (host, port) = match value.rfind(':') {
        // `[v6]` alone has colons inside the brackets only.
        Some(i) if !value[i..].contains(']') => (&value[..i], Some(&value[i + 1..])),
        _ => (value, None),
    };
    if !valid_host(host) {
        return Err("invalid Host");
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err("invalid port in Host");
        }
    }
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(Cow::Owned(value.to_ascii_lowercase()));
    }
    Ok(Cow::Borrowed(value))
}

/// Whether `host` (canonical, with or without a port) is one of `allowed` (lower case; a
/// leading `*.` matches any subdomain, not the domain itself).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    allowed.iter().any(|a| match a.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.ends_with(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
        }
        None => a == name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<String, &'static str> {
        canonical_path(p, PathPolicy::default()).map(Cow::into_owned)
    }

    fn with(p: &str, escaped_slashes: EscapedSlashes, path_params: PathParams) -> Result<String, &'static str> {
        canonical_path(
            p,
            PathPolicy {
                escaped_slashes,
                path_params,
            },
        )
        .map(Cow::into_owned)
    }

    #[test]
    fn the_neighbours_of_a_path_all_become_it() {
        for p in [
            "/api/x",
            "//api/x",
            "/api//x",
            "/%61pi/x",
            "/%61%70%69/%78",
            "/api/./x",
            "/./api/x",
            "/other/../api/x",
            "/api/x/y/..",
            "/../api/x",
            "/%2e%2e/api/x",
            "/%2E/api/x",
            "/api/%2e/x",
        ] {
            let got = canon(p).unwrap();
            assert!(got == "/api/x" || got == "/api/x/", "{p} -> {got}");
        }
    }

    #[test]
    fn what_is_already_canonical_is_borrowed() {
        for p in ["/", "/api/x", "/a.b/c..d/.e/", "/~user/x-y_z", "/a/b/"] {
            assert!(
                matches!(canonical_path(p, PathPolicy::default()), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn trailing_slashes_and_the_root() {
        assert_eq!(canon("/").unwrap(), "/");
        assert_eq!(canon("//").unwrap(), "/");
        assert_eq!(canon("/a/").unwrap(), "/a/");
        assert_eq!(canon("/a//").unwrap(), "/a/");
        assert_eq!(canon("/a/.").unwrap(), "/a/");
        assert_eq!(canon("/a/..").unwrap(), "/");
        assert_eq!(canon("/..").unwrap(), "/");
        assert_eq!(canon("/a/b/../../..").unwrap(), "/");
    }

    #[test]
    fn encodings_are_upper_case_and_reserved_ones_stay_encoded() {
        assert_eq!(canon("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(canon("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(canon("/100%25").unwrap(), "/100%25");
        // Decoded once only: %252e is a literal "%2e", not a dot.
        assert_eq!(canon("/%252e%252e/x").unwrap(), "/%252e%252e/x");
        for bad in ["/%", "/%4", "/%zz", "/a%g1"] {
            assert!(canon(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn escaped_slashes_follow_the_setting() {
        for p in ["/api%2Fx", "/api%2fx", "/api%5Cx", "/api\\x"] {
            assert!(canon(p).is_err(), "{p}");
            assert_eq!(
                with(p, EscapedSlashes::Decode, PathParams::Reject).unwrap(),
                "/api/x",
                "{p}"
            );
        }
        assert_eq!(
            with("/api%2fx", EscapedSlashes::Keep, PathParams::Reject).unwrap(),
            "/api%2Fx"
        );
        assert_eq!(
            with("/a%5cb", EscapedSlashes::Keep, PathParams::Reject).unwrap(),
            "/a%5Cb"
        );
        // Decoded slashes merge and dot segments around them resolve.
        assert_eq!(
            with("/x%2F..%2Fapi", EscapedSlashes::Decode, PathParams::Reject).unwrap(),
            "/api"
        );
    }

    #[test]
    fn parameters_follow_the_setting() {
        assert!(canon("/login;x").is_err());
        assert_eq!(
            with("/login;x", EscapedSlashes::Reject, PathParams::Strip).unwrap(),
            "/login"
        );
        assert_eq!(
            with("/a;p=1/b;q", EscapedSlashes::Reject, PathParams::Strip).unwrap(),
            "/a/b"
        );
        assert_eq!(
            with("/a;p/b", EscapedSlashes::Reject, PathParams::Keep).unwrap(),
            "/a;p/b"
        );
        // An encoded ; is data, not a parameter.
        assert_eq!(canon("/a%3bb").unwrap(), "/a%3Bb");
    }

    #[test]
    fn hosts_are_validated_and_lower_cased() {
        for ok in [
            "example.com",
            "a-b.example.com:8080",
            "127.0.0.1",
            "[::1]:443",
            "[2001:db8::1]",
            "localhost",
        ] {
            assert!(canonical_host(ok).is_ok(), "{ok}");
        }
        assert_eq!(canonical_host("Example.COM:80").unwrap(), "example.com:80");
        for bad in [
            "", "a b", "a b/c@x", "x/y", "user@x", "x:", "x:99999", "x:8o", "%61.com", "[::1", "[nope]", "a,b", "x:1:2",
        ] {
            assert!(canonical_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_hosts_match_exactly_or_below_a_wildcard() {
        let allowed = ["example.com".to_owned(), "*.shop.example".to_owned()];
        assert!(host_allowed("example.com", &allowed) && host_allowed("example.com:8080", &allowed));
        assert!(host_allowed("a.shop.example", &allowed) && host_allowed("a.b.shop.example:1", &allowed));
        for no in [
            "shop.example",
            "evilshop.example",
            "example.com.evil",
            "www.example.com",
        ] {
            assert!(!host_allowed(no, &allowed), "{no}");
        }
    }

    #[test]
    fn not_a_path() {
        assert!(canon("").is_err() && canon("*").is_err() && canon("api").is_err());
    }

    #[test]
    fn canonicalising_twice_changes_nothing() {
        let policies = [
            PathPolicy::default(),
            PathPolicy {
                escaped_slashes: EscapedSlashes::Decode,
                path_params: PathParams::Strip,
            },
            PathPolicy {
                escaped_slashes: EscapedSlashes::Keep,
                path_params: PathParams::Keep,
            },
        ];
        let parts = [
            "/", "//", ".", "..", "%2e", "%2F", "%5c", "a", "%41", ";p", "%3b", "~", "%7e", "b/",
        ];
        // Every path of up to four parts.
        let mut paths = vec![String::from("/")];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &paths {
                for part in parts {
                    next.push(format!("{p}{part}"));
                }
            }
            paths.extend(next);
            paths.dedup();
        }
        for policy in policies {
            for p in &paths {
                if let Ok(once) = canonical_path(p, policy) {
                    let twice = canonical_path(&once, policy).expect("a canonical path is accepted");
                    assert_eq!(once, twice, "{p} under {policy:?}");
                }
            }
        }
    }
}
