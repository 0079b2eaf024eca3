use bytes::Bytes;
use serde_json::json;

use super::{is_acceptable_request_id, parse_payload, query_pairs, take_payload_address, Headers};
use crate::ErrorKind;

#[test]
fn empty_and_blank_payloads_are_empty_objects() {
    assert_eq!(parse_payload(b"").ok(), Some(json!({})));
    assert_eq!(parse_payload(b" \n\t").ok(), Some(json!({})));
    assert_eq!(parse_payload(b"[1,2]").ok(), Some(json!([1, 2])));
    for bad in [&b"{"[..], b"nul", b"\xff\xfe", b"{\"a\":1}{"] {
        let error = parse_payload(bad).expect_err("not JSON");
        assert_eq!(error.kind, ErrorKind::InvalidJson);
    }
}

#[test]
fn a_payload_reply_address_is_taken_out_of_the_body() {
    let mut body = json!({"reply_to": "clients/1", "correlation_id": 42, "name": "Ada"});
    let address = take_payload_address(&mut body).expect("address");
    assert_eq!(address.topic, "clients/1");
    assert_eq!(address.correlation_data, Some(Bytes::from("42")));
    assert!(address.from_payload);
    assert_eq!(body, json!({"name": "Ada"}));

    let mut no_string_topic = json!({"reply_to": 7});
    assert!(take_payload_address(&mut no_string_topic).is_none());
    let mut not_an_object = json!(["reply_to"]);
    assert!(take_payload_address(&mut not_an_object).is_none());
}

#[test]
fn only_scalar_fields_become_query_pairs() {
    let body = json!({"page": 2, "q": "a&b", "active": true, "nested": {"x": 1}, "list": [1], "none": null});
    let mut pairs = query_pairs(&body);
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("active".to_string(), "true".to_string()),
            ("page".to_string(), "2".to_string()),
            ("q".to_string(), "a&b".to_string()),
        ]
    );
    assert!(query_pairs(&json!("text")).is_empty());
}

#[test]
fn request_ids_are_short_runs_of_safe_characters() {
    for good in ["a", "req-1", "0b6f:9a_x.1", &"x".repeat(128)] {
        assert!(is_acceptable_request_id(good), "{good}");
    }
    for bad in ["", "a b", "a\r\nb", "ünïcode", &"x".repeat(129), "a/b"] {
        assert!(!is_acceptable_request_id(bad), "{bad}");
    }
}

#[test]
fn header_lookups_ignore_case_and_keep_the_first_value() {
    let headers = Headers::from_properties(&[
        ("X-Request-ID".into(), "first".into()),
        ("x-request-id".into(), "second".into()),
    ]);
    assert_eq!(headers.get("x-request-id"), Some("first"));
    assert_eq!(headers.len(), 2);
}
