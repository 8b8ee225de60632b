use std::io::Read;

use super::*;

const ALL: &[Coding] = &Coding::ALL;

fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        Coding::Gzip => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        }
        Coding::Br => {
            brotli::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap();
        }
        Coding::Zstd => out = zstd::stream::decode_all(data).unwrap(),
    }
    out
}

fn sample(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"<li class=\"item\">edgecore</li>\n"[i % 31] ^ ((i / 997) as u8 % 3))
        .collect()
}

#[test]
fn the_heaviest_acceptable_coding_wins_and_the_servers_order_breaks_ties() {
    assert_eq!(negotiate("gzip, deflate, br, zstd", ALL), Some(Coding::Zstd));
    assert_eq!(negotiate("gzip, br", ALL), Some(Coding::Br));
    assert_eq!(negotiate("gzip, br", &[Coding::Gzip, Coding::Br]), Some(Coding::Gzip));
    assert_eq!(negotiate("br;q=0.5, gzip;q=0.8", ALL), Some(Coding::Gzip));
    assert_eq!(negotiate("GZIP", ALL), Some(Coding::Gzip));
    assert_eq!(negotiate("x-gzip", ALL), Some(Coding::Gzip));
    assert_eq!(negotiate("*", ALL), Some(Coding::Zstd));
    assert_eq!(negotiate("*;q=0.1, br", ALL), Some(Coding::Br));
    assert_eq!(negotiate("zstd;q=0, *", ALL), Some(Coding::Br));
    assert_eq!(negotiate("br ; q=1.000", ALL), Some(Coding::Br));
}

#[test]
fn identity_is_answered_when_nothing_offered_is_acceptable_or_identity_weighs_more() {
    for accept in ["", "identity", "deflate", "gzip;q=0", "br;q=0, gzip;q=0.000", "*;q=0"] {
        assert_eq!(negotiate(accept, ALL), None, "{accept:?}");
    }
    assert_eq!(negotiate("gzip;q=0.5, identity", ALL), None);
    assert_eq!(negotiate("gzip;q=0.5, identity;q=0.5", ALL), Some(Coding::Gzip));
    assert_eq!(negotiate("br", &[Coding::Gzip]), None);
}

#[test]
fn a_malformed_weight_drops_its_element_only() {
    for bad in ["q=2", "q=1.5", "q=0.1234", "q=abc", "q=", "q=-1", "junk"] {
        let accept = format!("br;{bad}, gzip;q=0.3");
        assert_eq!(negotiate(&accept, ALL), Some(Coding::Gzip), "{accept:?}");
    }
    assert_eq!(negotiate("br;level=9;q=0.9, gzip;q=0.3", ALL), Some(Coding::Br));
}

#[test]
fn every_coding_round_trips_whole_and_streamed_with_flushes() {
    let data = sample(300_000);
    for coding in Coding::ALL {
        for level in [*coding.levels().start(), coding.default_level(), *coding.levels().end()] {
            let whole = compress(coding, level, &data).unwrap();
            assert!(whole.len() < data.len() / 4, "{coding:?}@{level}: {}", whole.len());
            assert_eq!(decode(coding, &whole), data, "{coding:?}@{level}");
        }
        let mut e = Encoder::new(coding, coding.default_level(), None).unwrap();
        let mut streamed = Vec::new();
        for (i, chunk) in data.chunks(7_000).enumerate() {
            streamed.extend_from_slice(&e.write(chunk).unwrap());
            if i % 5 == 0 {
                // Everything so far decodes once flushed (a paused stream is readable).
                streamed.extend_from_slice(&e.flush().unwrap());
                let upto = ((i + 1) * 7_000).min(data.len());
                assert_eq!(decode_prefix(coding, &streamed), data[..upto], "{coding:?} after {i}");
            }
        }
        streamed.extend_from_slice(&e.finish().unwrap());
        assert_eq!(decode(coding, &streamed), data, "{coding:?} streamed");
        assert!(e.finish().is_err() || coding != Coding::Br);
    }
}

/// What a decoder gives for a stream that has not ended yet.
fn decode_prefix(coding: Coding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::GzDecoder::new(data)),
        Coding::Br => Box::new(brotli::Decompressor::new(data, 4096)),
        Coding::Zstd => Box::new(zstd::stream::read::Decoder::new(data).unwrap()),
    };
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn an_empty_body_is_a_valid_empty_stream() {
    for coding in Coding::ALL {
        let z = compress(coding, coding.default_level(), b"").unwrap();
        assert!(!z.is_empty());
        assert_eq!(decode(coding, &z), b"");
    }
}

#[test]
fn tokens_parse_back() {
    for c in Coding::ALL {
        assert_eq!(Coding::parse(c.token()), Some(c));
    }
    assert_eq!(Coding::parse("deflate"), None);
}
