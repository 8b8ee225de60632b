//! Decoding of the chunked transfer coding (RFC 9112 §7.1), strictly.
//!
//! Invariants: chunk sizes are 1*HEXDIG without sign, whitespace or overflow; every line ends in
//! CRLF (a bare LF is an error, as is anything but CRLF after chunk data); chunk extensions are
//! syntax-checked and ignored; the trailer section is parsed as header fields and discarded. The
//! decoded body never exceeds the caller's limit, and the limit is checked before bytes are copied.

use bytes::{Bytes, BytesMut};

use crate::error::{Error, ErrorKind, Result};

/// Longest chunk-size line we accept (size + extensions); longer lines are an attack, not data.
const MAX_CHUNK_LINE: usize = 4096;

/// Decodes a chunked body starting at `buf[start..]`.
///
/// Returns the decoded body and the offset just past the final CRLF of the message.
/// `ErrorKind::Incomplete` means the body is valid so far but more bytes are needed.
pub(crate) fn decode(buf: &Bytes, start: usize, max_body: usize) -> Result<(Bytes, usize)> {
    let mut pos = start;
    let mut body = BytesMut::new();
    loop {
        let line_end = find_crlf(buf, pos, MAX_CHUNK_LINE, "chunk size line")?;
        let line = &buf[pos..line_end];
        let size = parse_chunk_size(line)?;
        pos = line_end + 2;
        if size == 0 {
            let end = skip_trailers(buf, pos)?;
            return Ok((body.freeze(), end));
        }
        if body.len().saturating_add(size) > max_body {
            return Err(Error::downstream(
                ErrorKind::BodyTooLarge,
                format!("chunked body exceeds the limit of {max_body} bytes"),
            ));
        }
        let data_end = pos
            .checked_add(size)
            .ok_or_else(|| Error::bad_request("chunk size overflows"))?;
        if buf.len() < data_end + 2 {
            return Err(incomplete());
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(Error::bad_request(
                "chunk data is not followed by CRLF (bad chunk terminator)",
            ));
        }
        body.extend_from_slice(&buf[pos..data_end]);
        pos = data_end + 2;
    }
}

fn incomplete() -> Error {
    Error::downstream(ErrorKind::Incomplete, "incomplete chunked body")
}

/// Finds the CRLF ending the line that starts at `from`, rejecting bare LF and over-long lines.
fn find_crlf(buf: &[u8], from: usize, max: usize, what: &'static str) -> Result<usize> {
    let window = &buf[from..buf.len().min(from + max + 2)];
    match memchr::memchr(b'\n', window) {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(from + i - 1),
        Some(_) => Err(Error::bad_request(format!("{what} ends in a bare LF (CRLF required)"))),
        None if window.len() > max => Err(Error::bad_request(format!("{what} is longer than {max} bytes"))),
        None => Err(incomplete()),
    }
}

/// Parses `chunk-size [ chunk-ext ]` (the line without its CRLF).
fn parse_chunk_size(line: &[u8]) -> Result<usize> {
    let digits_end = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    if digits_end == 0 {
        return Err(Error::bad_request("invalid chunk size: expected hexadecimal digits"));
    }
    let rest = &line[digits_end..];
    if !rest.is_empty() {
        validate_chunk_ext(rest)?;
    }
    let mut size: usize = 0;
    for &b in &line[..digits_end] {
        let digit = (b as char).to_digit(16).unwrap() as usize;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or_else(|| Error::bad_request("invalid chunk size: too large"))?;
    }
    Ok(size)
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`.
/// We check that it starts with `;` (after optional whitespace) and holds no control characters.
fn validate_chunk_ext(rest: &[u8]) -> Result<()> {
    let trimmed = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map(|i| &rest[i..])
        .unwrap_or(&[]);
    if trimmed.first() != Some(&b';') {
        return Err(Error::bad_request(
            "invalid chunk size: unexpected characters after the size",
        ));
    }
    if trimmed.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::bad_request("invalid chunk extension: control character"));
    }
    Ok(())
}

/// Skips the trailer section after the last chunk; returns the offset past its final CRLF.
fn skip_trailers(buf: &[u8], mut pos: usize) -> Result<usize> {
    loop {
        let end = find_crlf(buf, pos, 8192, "trailer field")?;
        if end == pos {
            return Ok(pos + 2);
        }
        let line = &buf[pos..end];
        let colon = line.iter().position(|&b| b == b':');
        let valid_name = match colon {
            Some(c) if c > 0 => line[..c].iter().all(|&b| super::token::is_tchar(b)),
            _ => false,
        };
        if !valid_name || line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Error::bad_request("invalid trailer field in chunked body"));
        }
        pos = end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Result<(Bytes, usize)> {
        decode(&Bytes::copy_from_slice(s), 0, 1 << 20)
    }

    #[test]
    fn decodes_chunks_and_trailers() {
        let msg = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: y\r\n\r\nNEXT";
        let (b, n) = dec(msg).unwrap();
        assert_eq!(&b[..], b"hello world");
        assert_eq!(n, msg.len() - 4);
    }

    #[test]
    fn rejects_bad_sizes_and_terminators() {
        for bad in [
            &b"x\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n",
        ] {
            assert_eq!(dec(bad).unwrap_err().kind, ErrorKind::BadRequest, "{:?}", bad);
        }
        assert!(dec(b"5\r\nhelloXX0\r\n\r\n")
            .unwrap_err()
            .context
            .contains("terminator"));
        assert!(dec(b"5\nhello\r\n0\r\n\r\n").unwrap_err().context.contains("bare LF"));
        assert!(dec(b"fffffffffffffffffffff\r\n")
            .unwrap_err()
            .context
            .contains("too large"));
    }

    #[test]
    fn incomplete_is_distinguished() {
        for part in [&b"5\r\nhel"[..], b"5", b"5\r\nhello\r\n", b"0\r\n", b"0\r\nX: y\r\n"] {
            assert_eq!(dec(part).unwrap_err().kind, ErrorKind::Incomplete, "{:?}", part);
        }
    }

    #[test]
    fn body_limit_is_checked_before_copying() {
        let e = decode(&Bytes::from_static(b"100\r\n"), 0, 16).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BodyTooLarge);
    }
}
