//! [`Origin`]: one origin URL of the plan, parsed once.

use crate::error::{Error, Result};

/// A parsed origin: scheme, authority and base path, and its index among the plan's origins
/// (which selects its connection pool in the server state).
#[derive(Clone)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// host:port.
    pub authority: http::uri::Authority,
    /// Path prefix to prepend ("" for none).
    pub base_path: String,
    /// Its index among the plan's origins (see `Plan::each_origin`).
    pub index: usize,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Origin {
    /// Parses `http://host:port[/base]`; `index` numbers it among the plan's origins.
    pub fn parse(url: &str, index: usize) -> Result<Origin> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| Error::config(format!("invalid origin URL {url:?}")))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| Error::config(format!("origin {url:?} needs http:// or https://")))?;
        if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
            return Err(Error::config(format!("origin {url:?} must be http:// or https://")));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| Error::config(format!("origin {url:?} has no host")))?;
        Ok(Origin {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_by_name() {
        let o = Origin::parse("https://api.example:8443/base/", 3).unwrap();
        assert_eq!(format!("{o:?}"), "https://api.example:8443/base");
        assert_eq!(o.index, 3);
        for bad in ["api.example", "ftp://x", "http://", "not a url"] {
            assert!(Origin::parse(bad, 0).is_err(), "{bad}");
        }
    }
}
