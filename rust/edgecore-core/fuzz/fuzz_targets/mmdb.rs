//! The MaxMind DB reader on arbitrary (corrupt) database files, through the same lookup the
//! request path uses. A lookup must never panic, loop or allocate without bound, whatever the
//! file holds. (Inputs start from the small test databases in the seed corpus.)
#![no_main]

use std::net::IpAddr;

use edgecore_core::geo::db::{get_in, lookup_in, MmdbValue};
use libfuzzer_sys::fuzz_target;

const PROBES: [&str; 6] = [
    "1.1.1.1",
    "81.2.69.142",
    "2.125.160.216",
    "::1",
    "2001:218::1",
    "0.0.0.0",
];

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = maxminddb::Reader::from_source(data) else {
        return;
    };
    for ip in PROBES {
        let ip: IpAddr = ip.parse().unwrap();
        let _ = lookup_in(&reader, ip);
        let _ = get_in::<_, MmdbValue>(&reader, ip);
    }
});
