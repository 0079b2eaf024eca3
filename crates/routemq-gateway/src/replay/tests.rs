use super::{fingerprint, is_final, scope};

#[test]
fn scopes_separate_callers_topics_and_ids() {
    let alice = scope(Some("user:1:a:alice"), "t", "id");
    assert_eq!(alice, scope(Some("user:1:a:alice"), "t", "id"));
    assert_ne!(alice, scope(Some("user:1:b:alice"), "t", "id"));
    assert_ne!(alice, scope(None, "t", "id"));
    assert_ne!(alice, scope(Some("user:1:a:alice"), "u", "id"));
    assert_ne!(scope(Some("a"), "bc", "d"), scope(Some("ab"), "c", "d"));
}

#[test]
fn retryable_refusals_are_not_final() {
    for status in [200, 201, 204, 400, 403, 404, 409, 422] {
        assert!(is_final(status), "{status}");
    }
    for status in [408, 425, 429, 500, 502, 503, 504] {
        assert!(!is_final(status), "{status}");
    }
}

#[test]
fn fingerprints_are_sha1_hex() {
    let print = fingerprint(b"{\"a\":1}");
    assert_eq!(print.len(), crate::redis::records::FINGERPRINT_LEN);
    assert_ne!(print, fingerprint(b"{\"a\":2}"));
}
