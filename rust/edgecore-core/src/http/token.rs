//! Token characters (RFC 9110 §5.6.2): what a field name, a method or a chunk-extension name may
//! be made of. A leaf shared by the request parser and the chunked decoder.

/// `tchar` from RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
    ) || b.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_is_rfc_9110s() {
        for b in b"!#$%&'*+-.^_`|~azAZ09" {
            assert!(is_tchar(*b), "{}", *b as char);
        }
        for b in b" \t\r\n:;,()<>@[]{}\"/?=\x00\x7f\x80\xff" {
            assert!(!is_tchar(*b), "{b}");
        }
    }
}
