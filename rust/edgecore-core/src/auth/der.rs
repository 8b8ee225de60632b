//! The few DER structures key parsing needs: SubjectPublicKeyInfo's algorithm (to know what a PEM
//! key is before handing it to aws-lc) and an RSA modulus size. A reader, not a general ASN.1 library:
//! definite lengths only, as DER requires, and every length is bounds-checked.

/// One TLV: (tag, contents, rest).
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const INTEGER: u8 = 0x02;

/// The kind of key a SubjectPublicKeyInfo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpkiKind {
    Rsa,
    EcP256,
    EcP384,
    EcP521,
    Ed25519,
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Reads a SubjectPublicKeyInfo: its kind and the subjectPublicKey bits.
pub(crate) fn spki(der: &[u8]) -> Result<(SpkiKind, &[u8]), String> {
    let bad = || "not a SubjectPublicKeyInfo (expected a PEM \"PUBLIC KEY\")".to_string();
    let (tag, body, rest) = read_tlv(der).ok_or_else(bad)?;
    if tag != SEQUENCE || !rest.is_empty() {
        return Err(bad());
    }
    let (tag, alg, body) = read_tlv(body).ok_or_else(bad)?;
    if tag != SEQUENCE {
        return Err(bad());
    }
    let (tag, oid, params) = read_tlv(alg).ok_or_else(bad)?;
    if tag != OID {
        return Err(bad());
    }
    let kind = if oid == OID_RSA {
        SpkiKind::Rsa
    } else if oid == OID_ED25519 {
        SpkiKind::Ed25519
    } else if oid == OID_EC {
        let (tag, curve, _) = read_tlv(params).ok_or_else(bad)?;
        match (tag, curve) {
            (OID, c) if c == OID_P256 => SpkiKind::EcP256,
            (OID, c) if c == OID_P384 => SpkiKind::EcP384,
            (OID, c) if c == OID_P521 => SpkiKind::EcP521,
            _ => return Err("unsupported elliptic curve (JWS uses P-256, P-384 and P-521)".into()),
        }
    } else {
        return Err("unsupported public key algorithm (expected RSA, EC or Ed25519)".into());
    };
    let (tag, bits, _) = read_tlv(body).ok_or_else(bad)?;
    if tag != BIT_STRING || bits.first() != Some(&0) {
        return Err(bad());
    }
    Ok((kind, &bits[1..]))
}

/// The modulus of a PKCS#1 RSAPublicKey (`SEQUENCE { n INTEGER, e INTEGER }`), without leading zeros.
pub(crate) fn rsa_modulus(pkcs1: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = read_tlv(pkcs1)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, n, _) = read_tlv(body)?;
    if tag != INTEGER {
        return None;
    }
    let start = n.iter().position(|&b| b != 0).unwrap_or(n.len());
    Some(&n[start..])
}

/// Bits in a big-endian unsigned integer without leading zero bytes.
pub(crate) fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(&b) => n.len() * 8 - b.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_bounds_are_checked() {
        assert_eq!(read_tlv(&[0x30, 0x02, 1, 2]), Some((0x30, &[1u8, 2][..], &[][..])));
        assert_eq!(read_tlv(&[0x30, 0x05, 1]), None);
        assert_eq!(read_tlv(&[0x30, 0x82, 0x01]), None);
        assert_eq!(
            read_tlv(&[0x30, 0x81, 0x02, 1, 2, 3]),
            Some((0x30, &[1u8, 2][..], &[3u8][..]))
        );
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[0x80; 256]), 2048);
    }
}
