//! What the gateway may put in an MQTT 5 UTF-8 string — a topic, a user
//! property's name or value — so that no broker refuses the packet.
//!
//! MQTT 5 §1.5.4 forbids U+0000 and lets a receiver treat control
//! characters and non-characters as malformed; Mosquitto does (it
//! disconnects the sender: one reply to a poisoned address would cost every
//! other reply in flight on that connection). A Rust `&str` is already
//! well-formed UTF-8 (no surrogates, no overlong forms), so what is left to
//! check is the characters and the 65 535-byte length prefix.

/// The longest string an MQTT length prefix can carry.
pub const MAX_STRING_BYTES: usize = 65_535;

/// Whether `text` is a UTF-8 string every broker accepts: at most
/// [`MAX_STRING_BYTES`] and only [allowed](is_allowed_char) characters.
pub fn is_mqtt_string(text: &str) -> bool {
    text.len() <= MAX_STRING_BYTES && text.chars().all(is_allowed_char)
}

/// Not U+0000–U+001F, U+007F–U+009F (C0 and C1 controls, DEL) and not a
/// Unicode non-character (U+FDD0–U+FDEF, and the last two code points of
/// every plane).
pub fn is_allowed_char(c: char) -> bool {
    let code = u32::from(c);
    !(code <= 0x1F
        || (0x7F..=0x9F).contains(&code)
        || (0xFDD0..=0xFDEF).contains(&code)
        || code & 0xFFFE == 0xFFFE)
}

/// How many levels a topic has (`a/b/c`: 3; `a/`: 2).
pub fn topic_levels(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

#[cfg(test)]
mod tests;
