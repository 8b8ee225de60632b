//! Content codings (RFC 9110 §8.4): choosing one from `Accept-Encoding` (§12.5.3) and
//! compressing with it, a whole body at once or a stream piece by piece. The codecs are the
//! well-kept crates: flate2 (zlib-rs) for gzip, brotli, and zstd (libzstd).
//!
//! Memory per stream is bounded by the codec's window, kept small on purpose (an edge compresses
//! for many clients at once): brotli's window is 2^[`BR_WINDOW_LOG`] bytes and zstd's
//! 2^[`ZSTD_WINDOW_LOG`] (also under the 8 MiB that RFC 8878 lets HTTP clients refuse beyond).

use std::io::{self, Write};

use bytes::Bytes;

/// brotli's window: 2^20 bytes (1 MiB).
pub const BR_WINDOW_LOG: u32 = 20;
/// zstd's window: 2^20 bytes (1 MiB).
pub const ZSTD_WINDOW_LOG: u32 = 20;

/// A content coding the edge can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Zstandard (RFC 8878).
    Zstd,
    /// Brotli (RFC 7932).
    Br,
    /// gzip (RFC 1952).
    Gzip,
}

impl Coding {
    /// Every coding, in the default order of preference.
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// The coding's token in `Content-Encoding` and in configuration.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The coding named `name` (case-insensitive; `x-gzip` is gzip, RFC 9110 §8.4.1.3).
    pub fn parse(name: &str) -> Option<Coding> {
        let n = name.trim();
        if n.eq_ignore_ascii_case("zstd") {
            Some(Coding::Zstd)
        } else if n.eq_ignore_ascii_case("br") {
            Some(Coding::Br)
        } else if n.eq_ignore_ascii_case("gzip") || n.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else {
            None
        }
    }

    /// The levels the coding takes (zstd's "ultra" levels above 19 need windows too large for
    /// an edge).
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Coding::Zstd => 1..=19,
            Coding::Br => 0..=11,
            Coding::Gzip => 1..=9,
        }
    }

    /// The default level: the measured balance of CPU per MB and ratio
    /// (`python -m edgecore.bench compress`).
    pub fn default_level(self) -> i32 {
        match self {
            Coding::Zstd => 3,
            Coding::Br => 4,
            Coding::Gzip => 5,
        }
    }
}

/// The weight (0..=1000) `accept` (the `Accept-Encoding` values, comma-joined) gives each of
/// `offered`, then to identity. A coding not listed takes `*`'s weight, else 0; identity not
/// listed takes `*`'s, else 0: acceptable (RFC 9110 §12.5.3) but not preferred to a coding the
/// client listed. An element with a malformed weight is ignored.
fn weights(accept: &str, offered: &[Coding]) -> ([u16; 3], u16) {
    let (mut listed, mut star, mut identity) = ([None::<u16>; 3], None::<u16>, None::<u16>);
    for element in accept.split(',') {
        let mut parts = element.split(';');
        let name = parts.next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let Some(q) = qvalue(parts) else { continue };
        if name == "*" {
            star = Some(q);
        } else if name.eq_ignore_ascii_case("identity") {
            identity = Some(q);
        } else if let Some(c) = Coding::parse(name) {
            if let Some(i) = offered.iter().position(|o| *o == c) {
                listed[i] = Some(listed[i].map_or(q, |p| p.max(q)));
            }
        }
    }
    let mut out = [0u16; 3];
    for (o, l) in out.iter_mut().zip(listed) {
        *o = l.or(star).unwrap_or(0);
    }
    (out, identity.or(star).unwrap_or(0))
}

/// The weight of one element's parameters: `q=` as a qvalue (RFC 9110 §12.4.2) in thousandths,
/// 1000 without one, None when malformed.
fn qvalue<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut q = 1000;
    for p in params {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let v = v.trim();
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let thousandths = (0..3).fold(0u16, |acc, i| {
            acc * 10 + frac.as_bytes().get(i).map_or(0, |d| u16::from(d - b'0'))
        });
        q = match int {
            "0" => thousandths,
            "1" if thousandths == 0 => 1000,
            _ => return None,
        };
    }
    Some(q)
}

/// The coding to answer `accept` with, from `offered` (the server's order of preference, which
/// breaks ties between equal weights), or None for no coding (identity): when nothing offered
/// is acceptable, or identity weighs more than the best of them.
pub fn negotiate(accept: &str, offered: &[Coding]) -> Option<Coding> {
    let (w, identity) = weights(accept, offered);
    let mut best: Option<(usize, u16)> = None;
    for (i, q) in w.iter().enumerate().take(offered.len()) {
        if *q > 0 && best.is_none_or(|(_, b)| *q > b) {
            best = Some((i, *q));
        }
    }
    best.filter(|(_, q)| *q >= identity).map(|(i, _)| offered[i])
}

/// A streaming compressor: bytes in, compressed bytes out as the codec produces them.
pub struct Encoder {
    kind: Kind,
}

enum Kind {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Option<Box<brotli::CompressorWriter<Vec<u8>>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// A compressor for `coding` at `level` (within [`Coding::levels`]); `size`, when known,
    /// lets zstd size its tables to the input.
    pub fn new(coding: Coding, level: i32, size: Option<u64>) -> io::Result<Encoder> {
        let kind = match coding {
            Coding::Gzip => Kind::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.clamp(1, 9) as u32),
            )),
            Coding::Br => Kind::Br(Some(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                level.clamp(0, 11) as u32,
                BR_WINDOW_LOG,
            )))),
            Coding::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(Vec::new(), level.clamp(1, 19))?;
                z.window_log(ZSTD_WINDOW_LOG)?;
                z.include_checksum(false)?;
                z.set_pledged_src_size(size)?;
                Kind::Zstd(z)
            }
        };
        Ok(Encoder { kind })
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match &mut self.kind {
            Kind::Gzip(g) => g.get_mut(),
            Kind::Br(b) => b.as_mut().map_or_else(|| unreachable!("finished"), |b| b.get_mut()),
            Kind::Zstd(z) => z.get_mut(),
        }
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.out()))
    }

    /// Compresses `data`; returns what the codec produced so far (often nothing: codecs fill
    /// blocks before they emit).
    pub fn write(&mut self, data: &[u8]) -> io::Result<Bytes> {
        match &mut self.kind {
            Kind::Gzip(g) => g.write_all(data)?,
            Kind::Br(b) => b.as_mut().ok_or_else(finished)?.write_all(data)?,
            Kind::Zstd(z) => z.write_all(data)?,
        }
        Ok(self.take())
    }

    /// Emits everything written so far, decodable as it stands (a sync flush): for a stream
    /// that pauses.
    pub fn flush(&mut self) -> io::Result<Bytes> {
        match &mut self.kind {
            Kind::Gzip(g) => g.flush()?,
            Kind::Br(b) => b.as_mut().ok_or_else(finished)?.flush()?,
            Kind::Zstd(z) => z.flush()?,
        }
        Ok(self.take())
    }

    /// Ends the stream; returns the rest of the output.
    pub fn finish(&mut self) -> io::Result<Bytes> {
        match &mut self.kind {
            Kind::Gzip(g) => g.try_finish()?,
            Kind::Br(b) => {
                let w = b.take().ok_or_else(finished)?;
                return Ok(Bytes::from(w.into_inner()));
            }
            Kind::Zstd(z) => z.do_finish()?,
        }
        Ok(self.take())
    }
}

fn finished() -> io::Error {
    io::Error::other("the compressed stream is already finished")
}

/// `data` compressed with `coding` at `level`, whole.
pub fn compress(coding: Coding, level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = Encoder::new(coding, level, Some(data.len() as u64))?;
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    out.extend_from_slice(&e.write(data)?);
    out.extend_from_slice(&e.finish()?);
    Ok(out)
}

/// One of a bounded number of concurrent compression streams (each holds about a megabyte of
/// codec state while its client reads): taken before a stream starts, given back when it ends.
#[derive(Debug)]
pub struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    /// A slot of `taken` (whose limit is `max`), or None when all are in use.
    pub fn take(taken: &std::sync::Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot(taken.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
