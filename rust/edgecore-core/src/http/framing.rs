//! A second, strict reading of the bytes a client sends on an HTTP/1.1 connection, as they
//! arrive, for what the server's HTTP parser (hyper's) tolerates and [`super::parse_request`]
//! does not: a line that ends in a bare LF, `Content-Length` together with `Transfer-Encoding`,
//! `Transfer-Encoding` in HTTP/1.0 or not ending in `chunked`, and in chunked bodies whitespace
//! after a chunk size (`5 \r\n`), control bytes or bare LF in chunk extensions, sizes of more
//! than 16 hex digits and bare LF in trailers. Each is how two parsers come to disagree about
//! where a message ends (request smuggling), so none is guessed at.
//!
//! The guard follows the message framing (heads, `Content-Length` bodies, chunked bodies,
//! pipelined messages) with a few bytes of state and no copy: head lines are found with
//! `memchr`, only the framing fields are looked at, and body data is skipped by count. What it
//! does on a violation:
//!
//! - in a head: it replaces one byte of the head (the offending line's LF) with NUL, so the HTTP
//!   parser refuses the head with its own `400 Bad Request` and closes the connection: the
//!   request never reaches a handler or the origin;
//! - in a body: it replaces the offending byte with one that hyper's chunked decoder refuses in
//!   the same place, so the body fails to read and the server answers 400 (the request is
//!   refused before it is forwarded, or its forwarding is aborted, never completed).
//!
//! An HTTP/2 connection (the prior-knowledge preface) is passed through untouched. A connection
//! switched to another protocol (an `Upgrade` answered 101) must call [`FrameGuard::passthrough`].

use memchr::memchr;

/// What [`FrameGuard::inspect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The bytes are well framed so far.
    Ok,
    /// A head is refused: a byte of it was replaced so that the HTTP parser answers 400.
    HeadRefused(&'static str),
    /// A chunked body is refused: a byte of it was replaced so that hyper's decoder fails there.
    BodyRefused(&'static str),
    /// The request line names a major version other than 1 (`HTTP/2.0` in HTTP/1 syntax): its
    /// version was rewritten to `HTTP/1.1` so that it parses, and the caller answers 505.
    VersionUnsupported,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a head (`line` counts its lines).
    Head,
    /// `Content-Length` body bytes left.
    Body(u64),
    /// Chunk size digits read so far (hex), and their count.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after a chunk size (the size): only `;` may follow.
    SizeWs(u64),
    /// A chunk extension: the chunk's size, and the extension's length so far.
    Ext(u64, u16),
    /// The LF after a chunk-size line's CR; the size read.
    SizeLf(u64),
    /// Chunk data bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    /// Another protocol (HTTP/2, or after an upgrade): nothing is checked.
    Passthrough,
    /// A violation was found; nothing more is checked (the connection is closing).
    Failed,
}

/// The longest `Content-Length` or `Transfer-Encoding` field line (its bytes before the LF, CR
/// included) accepted, here and by [`super::parse_request`]; longer ones are refused.
pub const MAX_FRAMING_LINE: usize = 256;
const FIELD_CAP: usize = MAX_FRAMING_LINE;
/// The longest chunk extension accepted (per chunk).
const EXT_CAP: u16 = 1024;
const PREFACE: &[u8] = b"PRI * HTTP/2.0";
const HTTP10: &[u8] = b" HTTP/1.0";

/// The framing guard of one connection (see the module documentation).
#[derive(Debug)]
pub struct FrameGuard {
    state: State,
    /// The last byte inspected (for CRLF checks across reads).
    last: u8,
    /// Lines of the current head so far (0 while at the request line).
    line: u32,
    /// The current head line's bytes, up to [`FIELD_CAP`] (CR included).
    cur: Vec<u8>,
    /// The current line is longer than `cur` holds.
    cur_long: bool,
    /// The last bytes of the current line so far (CR included), however long it is: a long
    /// request line's version is at its end.
    tail: [u8; 10],
    tail_len: usize,
    first_message: bool,
    http10: bool,
    content_length: Option<u64>,
    transfer_encoding: Option<bool>,
}

impl Default for FrameGuard {
    fn default() -> Self {
        FrameGuard {
            state: State::Head,
            last: b'\n',
            line: 0,
            cur: Vec::new(),
            cur_long: false,
            tail: [0; 10],
            tail_len: 0,
            first_message: true,
            http10: false,
            content_length: None,
            transfer_encoding: None,
        }
    }
}

impl FrameGuard {
    /// A guard for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops checking: the connection now carries another protocol.
    pub fn passthrough(&mut self) {
        self.state = State::Passthrough;
    }

    /// Inspects the next bytes read from the client, in order. On a head violation a byte of
    /// `buf` has been replaced (see the module documentation).
    pub fn inspect(&mut self, buf: &mut [u8]) -> Outcome {
        let mut i = 0;
        while i < buf.len() {
            let step = match self.state {
                State::Passthrough | State::Failed => return Outcome::Ok,
                State::Head => self.head(buf, i),
                State::Body(left) => {
                    let n = left.min((buf.len() - i) as u64);
                    self.state = if n == left { State::Head } else { State::Body(left - n) };
                    Ok(i + n as usize)
                }
                State::Data(left) => {
                    let n = left.min((buf.len() - i) as u64);
                    self.state = if n == left {
                        State::DataCr
                    } else {
                        State::Data(left - n)
                    };
                    Ok(i + n as usize)
                }
                before => match self.chunked(buf[i]) {
                    Ok(()) => Ok(i + 1),
                    Err(why) => {
                        buf[i] = poison(before);
                        Err(Outcome::BodyRefused(why))
                    }
                },
            };
            match step {
                Ok(next) => {
                    if next > i {
                        self.last = buf[next - 1];
                    }
                    i = next;
                }
                // An unsupported version is answered (505) and the connection closed: nothing
                // after it is looked at.
                Err(outcome) => {
                    self.state = State::Failed;
                    return outcome;
                }
            }
        }
        Outcome::Ok
    }

    fn reset_head(&mut self) {
        self.line = 0;
        self.cur.clear();
        self.cur_long = false;
        self.http10 = false;
        self.content_length = None;
        self.transfer_encoding = None;
    }

    /// Reads head lines from `buf[i..]` until the head ends (the state changes), the bytes end
    /// (a partial line is kept), or a violation; returns where it stopped.
    fn head(&mut self, buf: &mut [u8], mut i: usize) -> Result<usize, Outcome> {
        const BARE_LF: &str = "a line ends in a bare LF (CRLF required)";
        loop {
            let rest = &buf[i..];
            let Some(n) = memchr(b'\n', rest) else {
                self.keep(rest);
                return Ok(buf.len());
            };
            let lf = i + n;
            let mut version = Outcome::Ok;
            let verdict = if self.cur.is_empty() {
                // The whole line is in this read (the common case): looked at in place, and
                // "long" exactly as if it had come in pieces (found by fuzzing: the verdict must
                // not depend on where reads end).
                let preface = self.first_message && rest.starts_with(PREFACE);
                if self.line == 0 && n > 0 && n <= FIELD_CAP && rest[n - 1] == b'\r' && !preface {
                    version = fix_version(&mut buf[i..lf - 1]);
                }
                let rest = &buf[i..];
                match rest[..n].strip_suffix(b"\r") {
                    Some(line) => self.end_of_line(line, n > FIELD_CAP, line.ends_with(HTTP10)),
                    None => Err(BARE_LF),
                }
            } else {
                // The line began in an earlier read: `cur` holds its start (`last` its last byte
                // when the LF is the first byte here).
                let crlf = if n > 0 {
                    rest[n - 1] == b'\r'
                } else {
                    self.last == b'\r'
                };
                self.keep(&rest[..n]);
                let mut cur = std::mem::take(&mut self.cur);
                if self.line == 0 && crlf && !self.cur_long && !(self.first_message && cur.starts_with(PREFACE)) {
                    // Reported as when the line comes whole; its bytes may have gone on already,
                    // so the parser may refuse the version itself instead.
                    let end = cur.len() - 1;
                    version = fix_version(&mut cur[..end]);
                }
                let tail = &self.tail[..self.tail_len];
                let http10 = tail.strip_suffix(b"\r").is_some_and(|t| t.ends_with(HTTP10));
                let v = if crlf {
                    self.end_of_line(cur.strip_suffix(b"\r").unwrap_or(&cur), self.cur_long, http10)
                } else {
                    Err(BARE_LF)
                };
                self.cur = cur;
                self.cur.clear();
                self.cur_long = false;
                self.tail_len = 0;
                v
            };
            if let Err(why) = verdict {
                // The head is not complete before this LF: a NUL here makes the parser refuse it.
                buf[lf] = 0;
                return Err(Outcome::HeadRefused(why));
            }
            i = lf + 1;
            if version != Outcome::Ok {
                return Err(version);
            }
            if self.state != State::Head || i == buf.len() {
                return Ok(i);
            }
        }
    }

    /// Keeps what a read holds of a line that continues in the next read (up to the cap).
    fn keep(&mut self, bytes: &[u8]) {
        let keep_tail = bytes.len().min(self.tail.len());
        let old = (self.tail.len() - keep_tail).min(self.tail_len);
        self.tail.copy_within(self.tail_len - old..self.tail_len, 0);
        self.tail[old..old + keep_tail].copy_from_slice(&bytes[bytes.len() - keep_tail..]);
        self.tail_len = old + keep_tail;
        let room = FIELD_CAP - self.cur.len();
        if bytes.len() > room {
            self.cur_long = true;
        }
        self.cur.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// A head line ended: `line` without its CRLF (only its first [`FIELD_CAP`] bytes when
    /// `long`). httparse allows no whitespace before a colon, so a framing field's name is
    /// exactly the line's first bytes.
    fn end_of_line(&mut self, line: &[u8], long: bool, ends_http10: bool) -> Result<(), &'static str> {
        if self.line == 0 {
            if line.is_empty() {
                return Ok(()); // Empty lines before a request line are ignored (RFC 9112 §2.2).
            }
            if self.first_message && line.starts_with(PREFACE) {
                self.state = State::Passthrough;
                return Ok(());
            }
            self.http10 = ends_http10;
            self.line = 1;
            return Ok(());
        }
        if line.is_empty() {
            return self.end_of_head();
        }
        self.line += 1;
        if is_field(line, b"content-length") {
            if long {
                return Err("a Content-Length field too long to be one");
            }
            let n = content_length(&line[15..]).ok_or("an invalid Content-Length")?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err("two different Content-Length values");
            }
            self.content_length = Some(n);
        } else if is_field(line, b"transfer-encoding") {
            if long {
                return Err("a Transfer-Encoding field too long to be one");
            }
            let last = line[18..]
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            self.transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
        }
        Ok(())
    }

    fn end_of_head(&mut self) -> Result<(), &'static str> {
        let (cl, te, http10) = (self.content_length, self.transfer_encoding, self.http10);
        self.reset_head();
        self.first_message = false;
        self.state = match (cl, te) {
            (Some(_), Some(_)) => return Err("Content-Length together with Transfer-Encoding"),
            (None, Some(_)) if http10 => return Err("Transfer-Encoding in HTTP/1.0"),
            (None, Some(false)) => return Err("a Transfer-Encoding that does not end in chunked"),
            (None, Some(true)) => State::Size { size: 0, digits: 0 },
            (Some(n), None) if n > 0 => State::Body(n),
            _ => State::Head,
        };
        Ok(())
    }

    /// One byte of chunked framing (not chunk data).
    fn chunked(&mut self, b: u8) -> Result<(), &'static str> {
        self.state = match (self.state, b) {
            // `digits`: 0 before any digit, else 1 + the significant ones (leading zeros are
            // digits like any other, as hyper and the parser read them; found by fuzzing).
            (State::Size { size, digits }, _) if b.is_ascii_hexdigit() => {
                let d = (b as char).to_digit(16).unwrap_or(0);
                let digits = if size == 0 && d == 0 {
                    digits.max(1)
                } else {
                    digits.max(1) + 1
                };
                if digits > 17 {
                    return Err("a chunk size of more than 16 significant hex digits");
                }
                State::Size {
                    size: size << 4 | u64::from(d),
                    digits,
                }
            }
            (State::Size { digits: 0, .. }, _) => return Err("a chunk line without a size"),
            (State::Size { size, .. }, b'\r') => State::SizeLf(size),
            (State::Size { size, .. } | State::SizeWs(size), b';') => State::Ext(size, 0),
            (State::Size { size, .. } | State::SizeWs(size), b' ' | b'\t') => State::SizeWs(size),
            (State::Size { .. } | State::SizeWs(_), _) => return Err("an invalid chunk size"),
            (State::Ext(size, _), b'\r') => State::SizeLf(size),
            (State::Ext(_, n), _) if n >= EXT_CAP => return Err("a chunk extension too long"),
            (State::Ext(size, n), b'\t') => State::Ext(size, n + 1),
            (State::Ext(..), 0..=0x1f | 0x7f) => return Err("a control byte in a chunk extension"),
            (State::Ext(size, n), _) => State::Ext(size, n + 1),
            (State::SizeLf(0), b'\n') => State::TrailerStart,
            (State::SizeLf(n), b'\n') => State::Data(n),
            (State::SizeLf(_), _) => return Err("a chunk-size line not ended by CRLF"),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::DataCr | State::DataLf, _) => return Err("chunk data not followed by CRLF"),
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerLine, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::TrailerLine, b'\t') => State::TrailerLine,
            (State::TrailerStart | State::TrailerLine, 0..=0x1f | 0x7f) => return Err("a control byte in a trailer"),
            (State::TrailerStart | State::TrailerLine, _) => State::TrailerLine,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => {
                self.reset_head();
                State::Head
            }
            (State::TrailerLf | State::EndLf, _) => return Err("a trailer line not ended by CRLF"),
            _ => return Err("unexpected chunked framing"),
        };
        Ok(())
    }
}

/// A request line ending in ` HTTP/x.y` with a version other than 1.0 and 1.1: a higher minor
/// version of 1 is served as 1.1 (RFC 9112 §2.3), another major version is rewritten to 1.1 so
/// that it parses and reported, for a 505 (RFC 9110 §15.6.6). Anything else is left to the parser.
fn fix_version(line: &mut [u8]) -> Outcome {
    let n = line.len();
    if n < 9 || &line[n - 9..n - 3] != b" HTTP/" || line[n - 2] != b'.' {
        return Outcome::Ok;
    }
    let (major, minor) = (line[n - 3], line[n - 1]);
    if !major.is_ascii_digit() || !minor.is_ascii_digit() {
        return Outcome::Ok;
    }
    match (major, minor) {
        (b'1', b'0' | b'1') => Outcome::Ok,
        (b'1', _) => {
            line[n - 1] = b'1';
            Outcome::Ok
        }
        (b'0', _) => Outcome::Ok, // HTTP/0.x: the parser refuses it (400).
        _ => {
            line[n - 3] = b'1';
            line[n - 1] = b'1';
            Outcome::VersionUnsupported
        }
    }
}

/// Whether `line` is a field named `name` (lower case), any case.
fn is_field(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len() && line[name.len()] == b':' && line[..name.len()].eq_ignore_ascii_case(name)
}

/// A byte that hyper's chunked decoder refuses in the state matching `state` (it accepts a
/// superset of what the guard does, so it is in that state): a newline inside an extension, NUL
/// inside trailers (which it parses with httparse at their end), elsewhere a letter that is
/// neither a hex digit nor the CR or LF expected.
fn poison(state: State) -> u8 {
    match state {
        State::Ext(..) => b'\n',
        State::TrailerStart | State::TrailerLine => 0,
        _ => b'x',
    }
}

/// `1*DIGIT`, or a list of identical such values (RFC 9110 §8.6); None when invalid.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut n = None;
    for v in value.split(|&b| b == b',') {
        let v = v.trim_ascii();
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // Leading zeros are digits like any other (`0005` is 5); only overflow is refused.
        let m = v
            .iter()
            .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
        if n.is_some_and(|n| n != m) {
            return None;
        }
        n = Some(m);
    }
    n
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
