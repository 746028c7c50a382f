//! Small encodings both sides use: RFC 3986 percent-encoding (AWS query bodies, Nomad API
//! paths) and hex SHA-256 digests (ECS client tokens, slots, config hashes).

use sha2::{Digest, Sha256};

/// Percent-encodes everything but RFC 3986's unreserved characters (`A-Za-z0-9-._~`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first `digits` lowercase hex digits (at most 64) of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8], digits: usize) -> String {
    let hex: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    hex[..digits.min(hex.len())].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a/b?c=d#e é"), "a%2Fb%3Fc%3Dd%23e%20%C3%A9");
    }

    #[test]
    fn sha256_hex_prefixes() {
        let full = sha256_hex(b"abc", 64);
        assert_eq!(full, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_hex(b"abc", 16), full[..16]);
        assert_eq!(sha256_hex(b"abc", 100), full);
    }
}
