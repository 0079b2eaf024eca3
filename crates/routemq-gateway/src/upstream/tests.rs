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

/// A GET of `path` with the given headers.
fn get(path: &str, headers: &[(&'static str, &str)]) -> super::PreparedCall {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().expect("header value"));
    }
    super::PreparedCall {
        method: reqwest::Method::GET,
        path: path.into(),
        query: vec![("q".into(), "1".into())],
        body: None,
        headers: map,
        timeout: std::time::Duration::from_secs(1),
        deadline_bound: false,
        deadline_header: Some(reqwest::header::HeaderName::from_static(
            "x-request-timeout-ms",
        )),
        accepts_chunks: false,
        caller: 0,
    }
}

#[test]
fn calls_share_a_key_only_when_nothing_the_answer_may_depend_on_differs() {
    use super::CallKey;
    let key = |call: &super::PreparedCall, caller: Option<&str>| {
        CallKey::new("s", call, caller.map(String::from))
    };
    let first = get("/items/1", &[("x-request-id", "a"), ("traceparent", "t1")]);
    let retry = get(
        "/items/1",
        &[("x-request-id", "b"), ("x-request-attempt", "2")],
    );
    assert_eq!(
        key(&first, Some("ada")),
        key(&retry, Some("ada")),
        "per-request headers aside"
    );
    assert_ne!(
        key(&first, Some("ada")),
        key(&first, Some("bob")),
        "another caller"
    );
    assert_ne!(
        key(&first, Some("ada")),
        key(&get("/items/2", &[]), Some("ada")),
        "another path"
    );
    let german = get("/items/1", &[("accept-language", "de")]);
    assert_ne!(key(&first, None), key(&german, None), "a forwarded header");
    let ada = get("/items/1", &[("x-user-id", "ada")]);
    let bob = get("/items/1", &[("x-user-id", "bob")]);
    assert_eq!(
        key(&ada, None),
        key(&bob, None),
        "across callers: identity aside"
    );
    assert_ne!(
        key(&ada, Some("c")),
        key(&bob, Some("c")),
        "per caller: identity counts"
    );
}
