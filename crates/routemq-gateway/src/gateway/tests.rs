//! The pipeline's parts without IO: the exchange a request becomes, where
//! its reply may go, the bounds it must keep, and credentials verified once.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jsonwebtoken::{encode, EncodingKey, Header};
use routemq_router::{Qos, SubscriptionFilter};
use serde_json::json;

use super::exchange::Exchange;
use super::reply_policy::{Refusal, ReplyPolicy};
use super::ReplyTopics;
use crate::middleware::{AuthMethod, Authenticator, Credentials, JwtKeys, JwtSettings};
use crate::route::Limits;
use crate::{ErrorKind, Headers, Inbound};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!";

fn inbound(topic: &[u8], properties: &[(&str, &str)]) -> Inbound {
    Inbound {
        topic: Bytes::copy_from_slice(topic),
        payload: Bytes::new(),
        qos: 1,
        response_topic: None,
        correlation_data: None,
        user_properties: properties
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        message_expiry: None,
        received_at: Instant::now(),
    }
}

fn authenticator() -> Authenticator {
    let keys = JwtKeys {
        hs256_secret: Some(SECRET.to_vec()),
        ..JwtKeys::default()
    };
    let settings = JwtSettings {
        keys,
        issuers: Vec::new(),
        audiences: Vec::new(),
        leeway: Duration::ZERO,
    };
    Authenticator::new(Some(settings), None, None)
}

fn bearer(sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|now| now.as_secs() + 600)
        .unwrap_or_default();
    let claims = json!({ "sub": sub, "exp": exp });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    );
    format!("Bearer {}", token.expect("a token"))
}

#[test]
fn an_exchange_keeps_an_acceptable_request_id_and_decodes_the_topic_once() {
    let (authenticator, limits) = (authenticator(), Limits::default());
    let request = inbound(b"api/v1/users/get/42", &[("X-Request-ID", "order-7:retry")]);
    let headers = Headers::from_properties(&request.user_properties);
    let credentials = Credentials::new(&authenticator, &headers);
    let exchange = Exchange::new(&request, &headers, &credentials, 512, Instant::now());
    assert_eq!(exchange.topic, Some("api/v1/users/get/42"));
    assert_eq!(
        (exchange.request_id.as_str(), exchange.retry_safe_id),
        ("order-7:retry", true)
    );

    // An id a client could abuse (a space, a control character) is replaced.
    let request = inbound(b"api/\xff", &[("x-request-id", "two words")]);
    let headers = Headers::from_properties(&request.user_properties);
    let credentials = Credentials::new(&authenticator, &headers);
    let exchange = Exchange::new(&request, &headers, &credentials, 512, Instant::now());
    assert!(!exchange.retry_safe_id);
    assert_ne!(exchange.request_id, "two words");
    assert_eq!(exchange.topic, None, "not UTF-8");
    assert_eq!(exchange.topic_text(), "api/\u{fffd}");
    assert!(limits.check_request(&request, &headers).is_ok());
}

#[test]
fn the_limits_refuse_with_the_status_of_what_was_exceeded() {
    let limits = Limits {
        max_topic_bytes: 8,
        max_user_properties: 1,
        ..Limits::default()
    };
    let kind = |request: &Inbound| {
        let headers = Headers::from_properties(&request.user_properties);
        limits
            .check_request(request, &headers)
            .err()
            .map(|e| e.kind)
    };
    assert_eq!(kind(&inbound(b"a/b", &[])), None);
    assert_eq!(
        kind(&inbound(b"a/b/c/d/e", &[])),
        Some(ErrorKind::InvalidTopic)
    );
    assert_eq!(
        kind(&inbound(b"a", &[("a", "1"), ("b", "2")])),
        Some(ErrorKind::HeadersTooLarge)
    );
}

#[test]
fn reply_addresses_are_refused_by_shape_by_the_served_filters_and_by_the_allowlist() {
    let served = [SubscriptionFilter {
        filter: "api/#".into(),
        qos: Qos::AtLeastOnce,
    }];
    let allow = ReplyTopics::parse(&["replies/{sub}/#", "replies/anonymous/#"]).expect("filters");
    let policy = ReplyPolicy::new(&Limits::default(), &served, allow, Instant::now());
    let authenticator = authenticator();
    let anonymous = Headers::default();
    let nobody = Credentials::new(&authenticator, &anonymous);
    let check = |topic: &str| policy.check(topic, &nobody).err();
    assert_eq!(check("replies/anonymous/tab-1"), None);
    assert_eq!(check("api/v1/users/get/1"), Some(Refusal::Served));
    assert_eq!(check("$SYS/broker"), Some(Refusal::Reserved));
    assert_eq!(check("replies/+/x"), Some(Refusal::Invalid));
    assert_eq!(check(&"a/".repeat(300)), Some(Refusal::TooLong));
    assert_eq!(check("elsewhere/x"), Some(Refusal::NotAllowed));
    assert_eq!(check("replies/alice/x"), Some(Refusal::NotBound));

    let token = bearer("alice");
    let alice = Headers::from_properties(&[("authorization".into(), token)]);
    let alice = Credentials::new(&authenticator, &alice);
    assert_eq!(policy.check("replies/alice/x", &alice).err(), None);
    assert_eq!(
        policy.check("replies/bob/x", &alice).err(),
        Some(Refusal::NotBound)
    );
}

#[test]
fn credentials_answer_each_route_by_its_own_methods() {
    let authenticator = authenticator();
    let headers = Headers::from_properties(&[("authorization".into(), bearer("alice"))]);
    let credentials = Credentials::new(&authenticator, &headers);
    assert_eq!(
        credentials.identity().map(|id| id.subject.as_str()),
        Some("alice")
    );
    let verified = credentials.verify(&[AuthMethod::Jwt]).expect("a JWT route");
    assert_eq!(verified.subject, "alice");
    let refused = credentials
        .verify(&[AuthMethod::ApiKey])
        .expect_err("an API-key route refuses a bearer token");
    assert_eq!(refused.kind, ErrorKind::Unauthorized);
    assert_eq!(refused.message, "bearer tokens are not accepted here");

    let forged = Headers::from_properties(&[("authorization".into(), "Bearer x.y.z".into())]);
    let forged = Credentials::new(&authenticator, &forged);
    assert!(forged.identity().is_none());
    let error = forged.verify(&[AuthMethod::Jwt]).expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Unauthorized);
}
