use proptest::prelude::*;

use super::*;
use crate::text::is_mqtt_string;

/// The vectors `docs/protocol.md` lists, so the two cannot drift apart.
const VECTORS: &[(&str, &str)] = &[
    ("alice", "alice"),
    ("ada.lovelace@example.com", "ada.lovelace@example.com"),
    ("org:ada", "org:ada"),
    ("it's", "it's"),
    ("José", "José"),
    (
        "3f2b8c1e-7d4a-4b8e-9c1f-2a6d5e8b7c90",
        "3f2b8c1e-7d4a-4b8e-9c1f-2a6d5e8b7c90",
    ),
    ("a/b", "a%2Fb"),
    ("a+b#", "a%2Bb%23"),
    ("100%", "100%25"),
    ("$SYS", "%24SYS"),
    ("~x", "%7Ex"),
    ("a b", "a%20b"),
    ("", "~"),
    ("\0", "%00"),
    ("a\u{a0}b", "a%C2%A0b"),
    ("a\u{feff}b", "a\u{feff}b"),
    ("x\u{1fffe}", "x%F0%9F%BF%BE"),
];

#[test]
fn the_documented_vectors_hold() {
    for (value, level) in VECTORS {
        assert_eq!(identity_level(value), *level, "{value:?}");
    }
    let long = "a".repeat(300);
    let hashed = identity_level(&long);
    // As the JavaScript in docs/protocol.md computes it.
    assert_eq!(
        hashed,
        "~9835fa6bf4e20a9b9ea812506302e98982721a6cf8d2cae67af57129bf21ae90"
    );
    let longest_raw = "a".repeat(MAX_RAW_LEVEL_BYTES);
    assert_eq!(identity_level(&longest_raw), longest_raw);
}

#[test]
fn the_legacy_encoding_differs_only_where_a_raw_level_is_now_used() {
    assert_eq!(
        encode_level("ada.lovelace@example.com"),
        "ada.lovelace%40example.com"
    );
    assert_eq!(encode_level("org:ada"), "org%3Aada");
    assert_eq!(encode_level("a/b"), identity_level("a/b"));
}

/// Strings rich in the characters the mapping treats specially.
fn value() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '/',
        '+',
        '#',
        '%',
        '$',
        '~',
        ' ',
        '@',
        ':',
        '\'',
        'a',
        'Z',
        '0',
        '-',
        '.',
        '\u{0}',
        '\u{7f}',
        '\u{85}',
        '\u{a0}',
        '\u{fdd0}',
        '\u{fffd}',
        '\u{1fffe}',
        'é',
        '😀',
    ]);
    prop_oneof![
        prop::collection::vec(special, 0..12).prop_map(|chars| chars.into_iter().collect()),
        ".{0,300}",
        "[a-z]{60,300}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn distinct_values_never_share_a_level(a in value(), b in value()) {
        if a != b {
            prop_assert_ne!(identity_level(&a), identity_level(&b));
            // During the deprecation window either form is accepted: a's
            // old form is never b's new one.
            prop_assert_ne!(encode_level(&a), identity_level(&b));
        }
    }

    #[test]
    fn every_level_is_one_valid_topic_level(a in value()) {
        let level = identity_level(&a);
        prop_assert!(!level.is_empty());
        prop_assert!(!level.contains(['/', '+', '#']));
        prop_assert!(!level.starts_with('$'));
        prop_assert!(is_mqtt_string(&level));
        prop_assert!(level.len() <= MAX_RAW_LEVEL_BYTES.max(MAX_LEVEL_BYTES + 1));
        let raw = is_safe_level(&a);
        prop_assert_eq!(raw, level == a);
        prop_assert_eq!(!raw, level.contains('%') || level.starts_with('~'));
    }
}
