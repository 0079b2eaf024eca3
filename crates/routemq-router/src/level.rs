//! Identity values as MQTT topic levels, for reply topics bound to a caller
//! (`replies/{sub}/#`): the gateway and clients must map them alike.
//!
//! [`identity_level`] is the mapping. A value that already is a safe single
//! level is used as it is, so broker ACLs that substitute the user name
//! (Mosquitto `%u`, EMQX `${username}`) express the same topic for e-mail
//! and UUID subjects. Any other value is encoded ([`encode_level`]), and an
//! encoded level always contains `%` or starts with `~`, which a raw one
//! never does: no two values share a level.

use sha2::{Digest, Sha256};

use crate::text::is_allowed_char;

/// The longest encoded value kept as it is; longer ones are hashed.
pub const MAX_LEVEL_BYTES: usize = 64;

/// The longest value used raw: an RFC 5321 address (the longest common
/// subject, an e-mail) is at most 254 octets; with the default
/// `limits.max_topic_bytes` (512) this leaves room for the rest of the
/// reply topic. Longer values are encoded, hence hashed.
pub const MAX_RAW_LEVEL_BYTES: usize = 256;

/// One value as exactly one topic level: the value itself when it is a
/// [safe level](is_safe_level), otherwise [`encode_level`].
pub fn identity_level(value: &str) -> String {
    if is_safe_level(value) {
        return value.to_string();
    }
    encode_level(value)
}

/// Whether `value` is used as its own topic level: 1 to
/// [`MAX_RAW_LEVEL_BYTES`] bytes, none of `/ + # %`, no whitespace, no
/// control or non-character (what MQTT strings may not carry), and not
/// starting with `$` (the broker's topics) or `~` (a hashed level).
pub fn is_safe_level(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_RAW_LEVEL_BYTES
        && !value.starts_with(['$', '~'])
        && value.chars().all(|c| {
            is_allowed_char(c) && !c.is_whitespace() && !matches!(c, '/' | '+' | '#' | '%')
        })
}

/// One value as exactly one topic level, every byte outside
/// `A–Z a–z 0–9 - _ .` percent-encoded with upper-case hex (so `/`, `+`,
/// `#`, `$`, `%` and `~` never appear raw), the empty value as `~` (a NUL is `%00`), and a
/// value whose encoding is longer than [`MAX_LEVEL_BYTES`] as `~` and the
/// hex SHA-256 of the raw value. [`identity_level`] uses it for values that
/// are not safe levels; it was the whole mapping before, and the gateway
/// still accepts it for a deprecation window (`replies.legacy_levels`).
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
        return "~".into();
    }
    if encoded.len() > MAX_LEVEL_BYTES {
        let digest = Sha256::digest(value.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return format!("~{hex}");
    }
    encoded
}

#[cfg(test)]
mod tests;
