//! Digests as they appear in Redis keys, fingerprints and client keys.

/// Lower-case hex of a digest, for Redis keys and fingerprints.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The first 128 bits of a SHA-256, in hex: short enough for a key, long
/// enough that no client can find a collision.
pub(crate) fn short_hash(value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.as_bytes());
    hex(&digest[..16])
}
