//! The framing guard's unit tests.
use super::*;

/// Runs `input` through a guard in pieces of `step` bytes; returns the outcome and the bytes
/// as the parser would see them.
fn run(input: &[u8], step: usize) -> (Outcome, Vec<u8>) {
    let mut g = FrameGuard::new();
    let mut out = input.to_vec();
    for piece in out.chunks_mut(step) {
        match g.inspect(piece) {
            Outcome::Ok => {}
            other => return (other, out.clone()),
        }
    }
    (Outcome::Ok, out)
}

fn verdict(input: &[u8]) -> Outcome {
    let whole = run(input, input.len().max(1)).0;
    // The same verdict whatever the reads' boundaries.
    for step in [1, 2, 3, 7] {
        assert_eq!(
            run(input, step).0,
            whole,
            "step {step}: {:?}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

const POST: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\n";

fn msg(fields: &[u8], body: &[u8]) -> Vec<u8> {
    [POST, fields, b"\r\n", body].concat()
}

#[test]
fn well_framed_messages_pass_untouched() {
    let te = b"Transfer-Encoding: chunked\r\n";
    for m in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"\r\nGET / HTTP/1.0\r\n\r\n".to_vec(),
        msg(b"Content-Length: 5\r\n", b"he\nlo"),
        msg(b"content-length: 5, 5\r\n", b"hello"),
        msg(b"Content-Length: 000000000000000000005\r\n", b"hello"),
        msg(te, b"000000000000000000005\r\nhello\r\n0000\r\n\r\n"),
        msg(te, b"5\r\nhello\r\n0\r\n\r\n"),
        msg(
            te,
            b"5;a=b;c=\"d e\"\r\nhello\r\nA ;x\r\n0123456789\r\n0\r\nT: v\r\n\r\n",
        ),
        msg(b"Transfer-Encoding: gzip, CHUNKED\r\n", b"0\r\n\r\n"),
        [msg(te, b"0\r\n\r\n"), msg(b"Content-Length: 1\r\n", b"x")].concat(),
    ] {
        assert_eq!(verdict(&m), Outcome::Ok, "{:?}", String::from_utf8_lossy(&m));
        assert_eq!(run(&m, 3).1, m, "bytes changed");
    }
}

#[test]
fn http2_is_passed_through() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\n\n\n";
    assert_eq!(verdict(preface), Outcome::Ok);
}

#[test]
fn head_violations_are_refused_by_breaking_the_head() {
    for (m, why) in [
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n".to_vec(), "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n".to_vec(), "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n".to_vec(), "bare LF"),
        (
            msg(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
            "together",
        ),
        (
            msg(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\n"),
            "together",
        ),
        (
            msg(b"Content-Length: 1\r\nContent-Length: 2\r\n", b"ab"),
            "two different",
        ),
        (msg(b"Content-Length: +1\r\n", b"a"), "invalid Content-Length"),
        (msg(b"Content-Length: 0x1\r\n", b"a"), "invalid Content-Length"),
        (
            msg(b"Content-Length: 99999999999999999999\r\n", b"a"),
            "invalid Content-Length",
        ),
        (
            msg(b"Transfer-Encoding: chunked, gzip\r\n", b""),
            "does not end in chunked",
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "HTTP/1.0",
        ),
    ] {
        let Outcome::HeadRefused(reason) = verdict(&m) else {
            panic!("not refused: {:?}", String::from_utf8_lossy(&m))
        };
        assert!(reason.contains(why), "{reason} for {:?}", String::from_utf8_lossy(&m));
        // One LF became NUL, and it is inside the head (before its end).
        let (_, seen) = run(&m, m.len());
        let nul = seen.iter().position(|&b| b == 0).unwrap();
        assert_eq!(m[nul], b'\n');
        let end = m.windows(4).position(|w| w == b"\r\n\r\n").map_or(m.len(), |e| e + 4);
        assert!(nul < end, "{:?}", String::from_utf8_lossy(&m));
    }
}

#[test]
fn a_long_request_line_is_read_the_same_in_pieces() {
    // Found by fuzzing: the HTTP/1.0 at the end of a request line longer than the kept
    // prefix was missed when the line came in pieces.
    let m = format!(
        "POST /{} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "a".repeat(400)
    );
    assert!(matches!(verdict(m.as_bytes()), Outcome::HeadRefused(r) if r.contains("HTTP/1.0")));
}

#[test]
fn versions_other_than_1_0_and_1_1() {
    let line = |v: &str| {
        let mut m = format!("GET / {v}\r\nHost: x\r\n\r\n").into_bytes();
        let o = FrameGuard::new().inspect(&mut m);
        (o, String::from_utf8_lossy(&m).lines().next().unwrap().to_owned())
    };
    assert_eq!(line("HTTP/1.1"), (Outcome::Ok, "GET / HTTP/1.1".into()));
    assert_eq!(line("HTTP/1.0"), (Outcome::Ok, "GET / HTTP/1.0".into()));
    assert_eq!(line("HTTP/1.2"), (Outcome::Ok, "GET / HTTP/1.1".into()));
    assert_eq!(line("HTTP/2.0"), (Outcome::VersionUnsupported, "GET / HTTP/1.1".into()));
    assert_eq!(line("HTTP/3.1"), (Outcome::VersionUnsupported, "GET / HTTP/1.1".into()));
    assert_eq!(line("HTTP/1.x"), (Outcome::Ok, "GET / HTTP/1.x".into()));
    assert_eq!(line("HTTP/0.9"), (Outcome::Ok, "GET / HTTP/0.9".into()));
    assert_eq!(line("http/2.0"), (Outcome::Ok, "GET / http/2.0".into()));
}

#[test]
fn an_overlong_framing_field_is_refused_however_it_arrives() {
    let long = format!("Transfer-Encoding: chunked{}\r\n", " ".repeat(300));
    let m = msg(long.as_bytes(), b"0\r\n\r\n");
    // `verdict` runs every split and asserts they agree.
    assert!(matches!(verdict(&m), Outcome::HeadRefused(r) if r.contains("too long")));
}

#[test]
fn a_cr_that_ended_a_body_does_not_make_the_next_lf_a_crlf() {
    // Found by fuzzing: the body's last byte is CR, the next message starts with a bare LF.
    let m = msg(b"Content-Length: 1\r\n", b"\r\nGET / HTTP/1.1\r\n\r\n");
    assert!(matches!(verdict(&m), Outcome::HeadRefused(r) if r.contains("bare LF")));
}

#[test]
fn chunked_violations_fail_the_body() {
    let te = b"Transfer-Encoding: chunked\r\n";
    for body in [
        &b"5 \r\nhello\r\n0\r\n\r\n"[..],
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"0_5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"10000000000000005\r\nhello\r\n0\r\n\r\n",
        b"5;a=b\nhello\r\n0\r\n\r\n",
        b"5;a=\x00\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"2\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello0\r\n\r\n",
        b"0\n\n",
        b"0\r\nX: y\n\r\n",
        b"0\r\n\n",
    ] {
        let m = msg(te, body);
        assert!(
            matches!(verdict(&m), Outcome::BodyRefused(_)),
            "not refused: {:?}",
            String::from_utf8_lossy(body)
        );
        // At most one byte of the body was replaced (none when hyper refuses it as it is),
        // none of the head.
        let seen = run(&m, m.len()).1;
        let changed: Vec<usize> = (0..m.len()).filter(|&i| seen[i] != m[i]).collect();
        assert!(changed.len() <= 1, "{:?}", String::from_utf8_lossy(body));
        assert!(changed.iter().all(|&i| i >= POST.len() + te.len() + 2));
    }
    let long_ext = msg(te, &[b"1;".as_slice(), &[b'a'; 2000], b"\r\nx\r\n0\r\n\r\n"].concat());
    assert!(matches!(verdict(&long_ext), Outcome::BodyRefused(_)));
}

#[test]
fn after_a_violation_nothing_more_is_checked_or_changed() {
    let mut g = FrameGuard::new();
    let mut bad = b"GET / HTTP/1.1\nHost: x\r\n\r\n".to_vec();
    assert!(matches!(g.inspect(&mut bad), Outcome::HeadRefused(_)));
    let mut more = b"\n\n".to_vec();
    assert_eq!(g.inspect(&mut more), Outcome::Ok);
    assert_eq!(more, b"\n\n");
}
