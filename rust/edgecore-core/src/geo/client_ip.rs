//! The client IP: the socket peer, unless the peer is a trusted proxy.
//!
//! The rule is nginx's `real_ip_recursive on` (and Envoy's trusted hops): when the peer is in a
//! trusted CIDR, walk `X-Forwarded-For` from the right, skipping addresses that are themselves
//! trusted; the first untrusted address is the client. A header from an untrusted peer changes
//! nothing, so a client cannot spoof its address. IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`)
//! are normalised to IPv4 before matching and in the result. An unparseable entry stops the walk:
//! the last address proven by a trusted hop is used.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};

/// The trusted proxy networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// Appends `ip` as text, as `Display` writes it: IPv4 digit by digit (the per-request case:
/// X-Forwarded-For, rate-limit keys; `Display` goes through the formatting machinery for each
/// octet), IPv6 through `Display`.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{ip}");
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; other addresses unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
    pub fn new<S: AsRef<str>>(cidrs: &[S]) -> Result<Self> {
        let mut nets = Vec::with_capacity(cidrs.len());
        for c in cidrs {
            let c = c.as_ref().trim();
            let net = match c.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match c.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(normalize(ip)),
                    Err(_) => {
                        return Err(Error::config(format!(
                            "invalid trusted proxy {c:?}: expected an IP or a CIDR"
                        )))
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies { nets })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// Parses one `X-Forwarded-For` element: an address, optionally with a port
/// (`1.2.3.4:80`, `[2001:db8::1]:443`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse::<IpAddr>().ok().map(normalize);
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Resolves the client IP from the socket `peer` and the `X-Forwarded-For` values (in order).
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = normalize(peer);
    if trusted.is_empty() || !trusted.contains(client) {
        return client;
    }
    // The chain is read from its end: the last field first, each field's hops from the right.
    // On the bytes (a hop is ASCII, or unparsable): a hop that is not an address, UTF-8 or not,
    // stops the walk.
    for value in forwarded_for.rev() {
        let hops = value.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii);
        for hop in hops.filter(|h| !h.is_empty()) {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !trusted.contains(ip) {
                        return client;
                    }
                }
                None => return client,
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.99.100",
            "255.255.255.255",
            "192.168.0.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, 255 - n, n / 3, 7]);
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    fn resolve(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        let t = TrustedProxies::new(trusted).unwrap();
        client_ip(peer.parse().unwrap(), xff.iter().map(|s| s.as_bytes()), &t).to_string()
    }

    #[test]
    fn many_fields_are_walked_from_the_last_one_as_one_chain() {
        // Many fields are one chain, read from the end of the last.
        let t = ["10.0.0.0/8"];
        let mut fields = vec!["6.6.6.6"; 6];
        fields.push("198.51.100.7, 10.0.0.9");
        fields.push("10.0.0.8");
        assert_eq!(resolve("10.0.0.1", &fields, &t), "198.51.100.7");
        fields.truncate(6);
        fields.extend(["10.0.0.7", "10.0.0.6", ""]);
        assert_eq!(
            resolve("10.0.0.1", &fields, &t),
            "6.6.6.6",
            "past trusted and empty fields"
        );
        fields[5] = "junk";
        assert_eq!(
            resolve("10.0.0.1", &fields, &t),
            "10.0.0.7",
            "an unparsable hop stops the walk"
        );
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        assert_eq!(resolve("203.0.113.9", &["1.1.1.1"], &["10.0.0.0/8"]), "203.0.113.9");
        assert_eq!(resolve("203.0.113.9", &["1.1.1.1"], &[]), "203.0.113.9");
    }

    #[test]
    fn walks_trusted_hops_from_the_right() {
        let t = ["10.0.0.0/8", "2001:db8::/32"];
        assert_eq!(resolve("10.0.0.1", &["198.51.100.7, 10.0.0.5"], &t), "198.51.100.7");
        assert_eq!(
            resolve("10.0.0.1", &["6.6.6.6, 198.51.100.7"], &t),
            "198.51.100.7",
            "spoofed left part ignored"
        );
        assert_eq!(
            resolve("10.0.0.1", &["6.6.6.6", "198.51.100.7, 10.1.1.1"], &t),
            "198.51.100.7",
            "several fields"
        );
        assert_eq!(
            resolve("10.0.0.1", &["10.2.2.2, 10.3.3.3"], &t),
            "10.2.2.2",
            "all trusted: leftmost"
        );
        assert_eq!(
            resolve("2001:db8::1", &["[2001:db8::2]:443, 198.51.100.7:8080"], &t),
            "198.51.100.7"
        );
        assert_eq!(resolve("10.0.0.1", &["garbage, 198.51.100.7"], &t), "198.51.100.7");
        assert_eq!(
            resolve("10.0.0.1", &["198.51.100.7, garbage"], &t),
            "10.0.0.1",
            "stops at garbage"
        );
        assert_eq!(resolve("10.0.0.1", &[], &t), "10.0.0.1");
        // Bytes that are not UTF-8 are garbage like any other: the walk stops there, and never
        // goes on to the fields before them.
        let t = TrustedProxies::new(&t).unwrap();
        let fields: [&[u8]; 2] = [b"6.6.6.6", b"198.51.100.7, \xff\xfe, 10.0.0.2"];
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), fields.into_iter(), &t).to_string(),
            "10.0.0.2"
        );
        let fields: [&[u8]; 2] = [b"6.6.6.6", b"\xff"];
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), fields.into_iter(), &t).to_string(),
            "10.0.0.1"
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_normalised() {
        assert_eq!(
            resolve("::ffff:10.0.0.1", &["::ffff:198.51.100.7"], &["10.0.0.0/8"]),
            "198.51.100.7"
        );
        assert_eq!(resolve("::ffff:203.0.113.1", &[], &[]), "203.0.113.1");
        assert!(TrustedProxies::new(&["nope"]).unwrap_err().context.contains("nope"));
    }
}
