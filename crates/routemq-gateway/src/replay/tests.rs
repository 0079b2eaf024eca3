use super::{fingerprint, is_final, parse, scope, Stored};

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
fn stored_records_parse_back() {
    let print = fingerprint(b"{\"a\":1}");
    assert_eq!(print.len(), 40);
    assert_ne!(print, fingerprint(b"{\"a\":2}"));

    let done = format!("done:{print}:201:{{\"data\":\"a:b\"}}");
    let Some(Stored::Done {
        fingerprint: f,
        reply,
    }) = parse(&done)
    else {
        panic!("done record parses");
    };
    assert_eq!((f, reply.status), (print.as_str(), 201));
    assert_eq!(&reply.payload[..], b"{\"data\":\"a:b\"}");
    assert!(reply.replayed);

    let pending = format!("pending:{print}:worker:1:abc");
    assert!(matches!(parse(&pending), Some(Stored::Pending { fingerprint: f }) if f == print));
    assert!(parse("done:short:200:{}").is_none());
    assert!(parse(&format!("done:{print}:notanumber:{{}}")).is_none());
    assert!(parse(&format!("other:{print}:x")).is_none());
}
