use proptest::prelude::*;

use super::{is_allowed_char, is_mqtt_string, topic_levels, MAX_STRING_BYTES};

/// Mosquitto's `mosquitto_validate_utf8` (lib/utf8_mosq.c, 2.0), rewritten
/// from its rules over raw bytes: the reference our check must agree with.
fn mosquitto_accepts(bytes: &[u8]) -> bool {
    if bytes.len() > MAX_STRING_BYTES {
        return false;
    }
    let mut at = 0;
    while at < bytes.len() {
        let first = bytes[at];
        let (len, mut code) = match first {
            0x00..=0x7F => (1, u32::from(first)),
            0xC2..=0xDF => (2, u32::from(first & 0x1F)),
            0xE0..=0xEF => (3, u32::from(first & 0x0F)),
            0xF0..=0xF4 => (4, u32::from(first & 0x07)),
            _ => return false,
        };
        if at + len > bytes.len() {
            return false;
        }
        for &next in &bytes[at + 1..at + len] {
            if next & 0xC0 != 0x80 {
                return false;
            }
            code = (code << 6) | u32::from(next & 0x3F);
        }
        let overlong = (len == 3 && code < 0x800) || (len == 4 && code < 0x10000);
        if overlong || (0xD800..=0xDFFF).contains(&code) || code > 0x10FFFF {
            return false;
        }
        if code <= 0x1F || (0x7F..=0x9F).contains(&code) {
            return false;
        }
        if (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFF >= 0xFFFE {
            return false;
        }
        at += len;
    }
    true
}

/// Characters near every boundary the rules draw, mixed with any others.
fn edgy_char() -> impl Strategy<Value = char> {
    prop_oneof![
        any::<char>(),
        (0u32..0xA0).prop_filter_map("a char", char::from_u32),
        (0xFDC0u32..0xFE00).prop_filter_map("a char", char::from_u32),
        (0u32..=16).prop_flat_map(|plane| {
            (0xFFFCu32..=0xFFFF)
                .prop_filter_map("a char", move |low| char::from_u32(plane << 16 | low))
        }),
        Just('/'),
        Just('a'),
    ]
}

proptest! {
    #[test]
    fn the_check_agrees_with_the_broker_on_any_string(chars in prop::collection::vec(edgy_char(), 0..40)) {
        let text: String = chars.into_iter().collect();
        prop_assert_eq!(is_mqtt_string(&text), mosquitto_accepts(text.as_bytes()), "{:?}", text);
    }

    #[test]
    fn raw_bytes_that_are_not_utf8_never_become_a_string(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(is_mqtt_string(text), mosquitto_accepts(&bytes));
        }
    }
}

#[test]
fn controls_and_non_characters_are_refused() {
    for refused in [
        '\0',
        '\u{1}',
        '\t',
        '\u{1f}',
        '\u{7f}',
        '\u{85}',
        '\u{9f}',
        '\u{fdd0}',
        '\u{fdef}',
        '\u{fffe}',
        '\u{ffff}',
        '\u{1fffe}',
        '\u{10ffff}',
    ] {
        assert!(!is_allowed_char(refused), "{refused:?}");
    }
    for allowed in [
        ' ', 'a', '~', '\u{a0}', 'é', '\u{fdcf}', '\u{fdf0}', '\u{fffd}', '😀',
    ] {
        assert!(is_allowed_char(allowed), "{allowed:?}");
    }
    assert!(is_mqtt_string(&"a".repeat(MAX_STRING_BYTES)));
    assert!(!is_mqtt_string(&"a".repeat(MAX_STRING_BYTES + 1)));
}

#[test]
fn levels_are_counted_by_separators() {
    assert_eq!(topic_levels("a"), 1);
    assert_eq!(topic_levels("a/b/c"), 3);
    assert_eq!(topic_levels("a/"), 2);
    assert_eq!(topic_levels("/"), 2);
}
