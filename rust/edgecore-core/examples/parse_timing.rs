//! Times the pieces of `parse_request` on a browser request (a development aid, not a benchmark).
use std::time::Instant;

fn main() {
    let req = std::fs::read(std::env::args().nth(1).expect("path to a request file")).unwrap();
    let buf = bytes::Bytes::from(req);
    let limits = edgecore_core::http::Limits::default();
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(edgecore_core::http::parse_request(&buf, &limits).unwrap());
    }
    println!("parse_request: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
    let t = Instant::now();
    for _ in 0..n {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut h);
        std::hint::black_box(r.parse(&buf).unwrap());
    }
    println!("httparse only: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
    if std::env::var_os("PARTS").is_some() {
        parts(&buf);
    }
}

#[allow(dead_code)]
fn parts(buf: &bytes::Bytes) {
    let n = 200_000;
    let mut h = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut h);
    r.parse(buf).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        for h in r.headers.iter() {
            std::hint::black_box(http::HeaderName::from_bytes(h.name.as_bytes()).unwrap());
        }
    }
    println!("names: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
    let t = Instant::now();
    for _ in 0..n {
        for h in r.headers.iter() {
            std::hint::black_box(http::HeaderValue::from_maybe_shared(buf.slice_ref(h.value)).unwrap());
        }
    }
    println!("values: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
    let names: Vec<_> = r
        .headers
        .iter()
        .map(|h| http::HeaderName::from_bytes(h.name.as_bytes()).unwrap())
        .collect();
    let t = Instant::now();
    for _ in 0..n {
        let mut m = http::HeaderMap::with_capacity(20);
        for nm in &names {
            m.append(nm.clone(), http::HeaderValue::from_static("x"));
        }
        std::hint::black_box(m);
    }
    println!("map: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
}
