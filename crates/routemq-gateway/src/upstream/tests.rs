use super::headers::is_forwardable;
use super::{HeaderPolicy, PathTemplate};
use crate::{ErrorKind, Headers};

fn render(template: &str, value: &str) -> Result<String, ErrorKind> {
    PathTemplate::parse(template)
        .expect("valid template")
        .render(|_| Some(value))
        .map_err(|error| error.kind)
}

#[test]
fn params_cannot_change_the_upstream_path() {
    assert_eq!(render("/users/{id}", "42"), Ok("/users/42".into()));
    assert_eq!(render("/users/{id}", "a/b"), Ok("/users/a%2Fb".into()));
    assert_eq!(render("/users/{id}", "%2F"), Ok("/users/%252F".into()));
    assert_eq!(
        render("/users/{id}", "x?admin=1"),
        Ok("/users/x%3Fadmin%3D1".into())
    );
    assert_eq!(
        render("/users/{id}", "x#frag"),
        Ok("/users/x%23frag".into())
    );
    assert_eq!(render("/users/{id}", "é"), Ok("/users/%C3%A9".into()));
    assert_eq!(render("/users/{id}", "..."), Ok("/users/...".into()));
    assert_eq!(render("/users/{id}", ".."), Err(ErrorKind::InvalidParam));
    assert_eq!(render("/users/{id}", "."), Err(ErrorKind::InvalidParam));
}

#[test]
fn rendered_paths_survive_url_parsing_unchanged() {
    for value in ["a/../b", "%2e%2e", "..%2F", "a b", "\\..\\"] {
        let path = render("/users/{id}", value).expect("renders");
        let url = reqwest::Url::parse(&format!("http://h{path}")).expect("parses");
        assert_eq!(url.path(), path, "{value}");
        assert!(url.query().is_none());
    }
}

#[test]
fn malformed_templates_are_rejected() {
    assert!(PathTemplate::parse("users/{id}").is_err());
    assert!(PathTemplate::parse("/users/{id").is_err());
    assert!(PathTemplate::parse("/users/id}").is_err());
    assert!(PathTemplate::parse("/users/{}").is_err());
    assert!(PathTemplate::parse("/users?x=1").is_err());
    let template = PathTemplate::parse("/v2/users/{action}/x").expect("valid");
    assert_eq!(template.param_names().collect::<Vec<_>>(), ["action"]);
}

#[test]
fn identity_and_hop_by_hop_headers_are_never_forwarded() {
    for name in [
        "Host",
        "connection",
        "X-User-ID",
        "x-consumer-id",
        "x-authenticated-scope",
        "transfer-encoding",
    ] {
        assert!(!is_forwardable(name), "{name}");
        assert!(HeaderPolicy::new([name]).is_err(), "{name}");
    }
    assert!(is_forwardable("accept-language"));
}

#[test]
fn only_allowed_headers_are_copied() {
    let policy = HeaderPolicy::new(["accept-language"]).expect("valid");
    let headers = Headers::from_properties(&[
        ("Accept-Language".into(), "fr".into()),
        ("x-user-id".into(), "admin".into()),
    ]);
    let mut out = reqwest::header::HeaderMap::new();
    policy.apply(&headers, &mut out).expect("applies");
    assert_eq!(out.len(), 1);
    assert_eq!(out["accept-language"], "fr");
    let bad = Headers::from_properties(&[("accept-language".into(), "a\r\nb".into())]);
    let error = policy.apply(&bad, &mut out).expect_err("invalid value");
    assert_eq!(error.kind, ErrorKind::InvalidHeader);
}
