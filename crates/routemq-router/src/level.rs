//! Identity values as MQTT topic levels, for reply topics bound to a caller
//! (`replies/{sub}/#`): the gateway and clients must encode them alike.

use sha2::{Digest, Sha256};

/// The longest encoded value kept as it is; longer ones are hashed.
pub const MAX_LEVEL_BYTES: usize = 64;

/// One value as exactly one topic level: bytes outside `A–Z a–z 0–9 - _ .`
/// are percent-encoded (so `/`, `+`, `#`, `$`, `%` and `~` never appear raw),
/// the empty value is `%00`, and a value whose encoding is longer than
/// [`MAX_LEVEL_BYTES`] becomes `~` and the hex SHA-256 of the raw value.
pub fn encode_level(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    if encoded.is_empty() {
        return "%00".into();
    }
    if encoded.len() > MAX_LEVEL_BYTES {
        let digest = Sha256::digest(value.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return format!("~{hex}");
    }
    encoded
}
