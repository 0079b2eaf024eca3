use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use routemq_router::{Group, Qos, RouteTable};
use serde_json::{json, Value};

use super::auth::JwtVerifier;
use super::{AuthMethod, Cors, Flow, Middleware, RequestContext, Transform};
use super::{Authenticator, CorsSpec, Credentials, JwtKeys, JwtSettings, TransformSpec};
use crate::{ErrorKind, Headers};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../../testdata/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../testdata/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../testdata/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../testdata/ec_public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "exp": now() + 600,
        "iss": "routemq-tests",
        "aud": "gateway",
        "scope": "users:read users:write",
        "roles": ["admin"],
    })
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("token encodes")
}

fn verifier(keys: JwtKeys) -> JwtVerifier {
    JwtVerifier::new(
        JwtSettings {
            keys,
            issuers: vec!["routemq-tests".into()],
            audiences: vec!["gateway".into()],
            leeway: Duration::ZERO,
        },
        None,
    )
}

fn hs256_verifier() -> JwtVerifier {
    verifier(JwtKeys {
        hs256_secret: Some(SECRET.to_vec()),
        ..JwtKeys::default()
    })
}

fn public_key_verifier() -> JwtVerifier {
    verifier(JwtKeys {
        public_keys: vec![
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("rsa key"),
            ),
            (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(EC_PUBLIC).expect("ec key"),
            ),
        ],
        ..JwtKeys::default()
    })
}

fn rejection(verifier: &JwtVerifier, token: &str) -> String {
    match verifier.verify(token) {
        Ok(identity) => panic!("token accepted for {identity:?}"),
        Err(rejected) => rejected.to_string(),
    }
}

#[test]
fn a_valid_hs256_token_yields_subject_scopes_and_roles() {
    let identity = hs256_verifier()
        .verify(&hs256(&claims(), SECRET))
        .expect("valid token");
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.method, AuthMethod::Jwt);
    assert_eq!(identity.scopes, ["users:read", "users:write"]);
    assert_eq!(identity.roles, ["admin"]);
}

#[test]
fn expired_premature_foreign_and_forged_tokens_are_refused() {
    let verifier = hs256_verifier();
    let mut expired = claims();
    expired["exp"] = json!(now() - 10);
    assert!(rejection(&verifier, &hs256(&expired, SECRET)).contains("expired"));

    let mut premature = claims();
    premature["nbf"] = json!(now() + 300);
    assert!(rejection(&verifier, &hs256(&premature, SECRET)).contains("nbf"));

    let mut foreign_issuer = claims();
    foreign_issuer["iss"] = json!("someone-else");
    assert!(rejection(&verifier, &hs256(&foreign_issuer, SECRET)).contains("issuer"));

    let mut foreign_audience = claims();
    foreign_audience["aud"] = json!("another-api");
    assert!(rejection(&verifier, &hs256(&foreign_audience, SECRET)).contains("audience"));

    let mut no_expiry = claims();
    no_expiry.as_object_mut().map(|c| c.remove("exp"));
    assert!(rejection(&verifier, &hs256(&no_expiry, SECRET)).contains("exp"));

    let forged = hs256(&claims(), b"another-secret-another-secret-xx");
    assert!(rejection(&verifier, &forged).contains("signature"));

    // Payload swapped under a valid signature.
    let valid = hs256(&claims(), SECRET);
    let other = hs256(&json!({"sub": "mallory", "exp": now() + 600}), b"x");
    let parts: Vec<&str> = valid.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert!(rejection(&verifier, &spliced).contains("signature"));

    for garbage in ["", "abc", "a.b.c", "Bearer", "...."] {
        rejection(&verifier, garbage);
    }
}

#[test]
fn a_remembered_token_stops_working_when_it_expires_and_remembers_no_other() {
    let verifier = hs256_verifier();
    let mut short = claims();
    short["exp"] = json!(now() + 1);
    let token = hs256(&short, SECRET);
    assert_eq!(verifier.verify(&token).expect("valid").subject, "alice");
    assert_eq!(
        verifier.verify(&token).expect("remembered").subject,
        "alice"
    );
    // The same payload under a forged signature is a different token.
    let at = token.len() - 10;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    rejection(&verifier, &forged);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while verifier.verify(&token).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after exp"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rejection(&verifier, &token).contains("expired"));
}

#[test]
fn alg_none_is_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        rejection(&hs256_verifier(), &token);
        rejection(&public_key_verifier(), &token);
    }
}

#[test]
fn an_rsa_public_key_is_never_used_as_an_hmac_secret() {
    // The classic confusion attack: sign HS256 with the server's public key.
    let confused = hs256(&claims(), RSA_PUBLIC);
    assert!(rejection(&public_key_verifier(), &confused).contains("not accepted"));
}

#[test]
fn rs256_and_es256_tokens_verify_against_their_own_keys_only() {
    let verifier = public_key_verifier();
    let rs = encode(
        &Header::new(Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa private"),
    )
    .expect("rs256");
    let es = encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(EC_PRIVATE).expect("ec private"),
    )
    .expect("es256");
    assert_eq!(
        verifier.verify(&rs).expect("rs256 verifies").subject,
        "alice"
    );
    assert_eq!(
        verifier.verify(&es).expect("es256 verifies").subject,
        "alice"
    );
    // An RS384 header over an RS256 key is not accepted: only configured algorithms are.
    let rs384 = encode(
        &Header::new(Algorithm::RS384),
        &claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa private"),
    )
    .expect("rs384");
    assert!(rejection(&verifier, &rs384).contains("not accepted"));
    // HS256 is refused when no secret is configured.
    rejection(&verifier, &hs256(&claims(), SECRET));
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa private");
    let mut jwk = Jwk::from_encoding_key(
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("rsa private"),
        Algorithm::RS256,
    )
    .expect("jwk");
    jwk.common.key_id = Some("key-1".into());
    let verifier = verifier(JwtKeys {
        jwks: Some(JwkSet { keys: vec![jwk] }),
        ..JwtKeys::default()
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-1".into());
    let token = encode(&header, &claims(), &private).expect("token");
    assert_eq!(verifier.verify(&token).expect("verifies").subject, "alice");
    header.kid = Some("key-2".into());
    let token = encode(&header, &claims(), &private).expect("token");
    assert!(rejection(&verifier, &token).contains("unknown key id"));
}

fn with_context<T>(
    topic: &str,
    headers: &[(&str, &str)],
    body: Value,
    run: impl FnOnce(&mut RequestContext<'_>) -> T,
) -> T {
    let table =
        RouteTable::build(Group::root().route("api/v2/users/{action}", Qos::AtLeastOnce, ()))
            .expect("routes build");
    let found = table.find(topic).expect("route matches");
    let headers = Headers::from_properties(
        &headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    );
    let authenticator = Authenticator::new(None, None, None);
    let credentials = Credentials::new(&authenticator, &headers);
    let mut ctx = RequestContext {
        request_id: "req-1",
        topic,
        params: &found.params,
        headers: &headers,
        credentials: &credentials,
        response_topic: None,
        route: None,
        body,
        identity: None,
        reply_properties: Vec::new(),
    };
    run(&mut ctx)
}

#[test]
fn the_reference_v2_transform_is_configuration() {
    let transform = Transform::new(
        "v2".into(),
        TransformSpec {
            rename: vec![("user_data".into(), "user".into())],
            remove: vec!["debug".into()],
            set: vec![
                ("api_version".into(), json!("v2")),
                ("action".into(), json!("{action}")),
            ],
            add: vec![("source".into(), json!("mqtt"))],
        },
    );
    let body = with_context(
        "api/v2/users/create",
        &[],
        json!({"user_data": {"name": "Ann"}, "debug": true, "source": "app"}),
        |ctx| {
            assert!(matches!(transform.request_filter(ctx), Ok(Flow::Continue)));
            ctx.body.clone()
        },
    );
    assert_eq!(
        body,
        json!({"user": {"name": "Ann"}, "api_version": "v2", "action": "create", "source": "app"})
    );
    let refused = with_context("api/v2/users/create", &[], json!([1, 2]), |ctx| {
        transform.request_filter(ctx).err().map(|e| e.kind)
    });
    assert_eq!(refused, Some(ErrorKind::InvalidJson));
}

fn cors() -> Cors {
    Cors::new(
        "cors".into(),
        CorsSpec {
            allow_origins: vec!["https://app.example".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into()],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        },
    )
}

#[test]
fn cors_checks_origins_and_answers_preflights() {
    let cors = cors();
    let (flow, properties) = with_context(
        "api/v2/users/get",
        &[("origin", "https://app.example")],
        json!({}),
        |ctx| (cors.request_filter(ctx), ctx.reply_properties.clone()),
    );
    assert!(matches!(flow, Ok(Flow::Continue)));
    assert!(properties.contains(&(
        "access-control-allow-origin".into(),
        "https://app.example".into()
    )));

    let refused = with_context(
        "api/v2/users/get",
        &[("origin", "https://evil.example")],
        json!({}),
        |ctx| cors.request_filter(ctx).err().map(|e| e.kind),
    );
    assert_eq!(refused, Some(ErrorKind::Forbidden));

    let (flow, properties) = with_context(
        "api/v2/users/get",
        &[
            ("origin", "https://app.example"),
            ("method", "OPTIONS"),
            ("access-control-request-method", "POST"),
        ],
        json!({}),
        |ctx| (cors.request_filter(ctx), ctx.reply_properties.clone()),
    );
    let Ok(Flow::Respond(reply)) = flow else {
        panic!("preflight answered directly");
    };
    assert_eq!(reply.status, 204);
    assert!(properties.contains(&("access-control-allow-methods".into(), "GET, POST".into())));

    let refused = with_context(
        "api/v2/users/get",
        &[
            ("origin", "https://app.example"),
            ("method", "options"),
            ("access-control-request-method", "DELETE"),
        ],
        json!({}),
        |ctx| cors.request_filter(ctx).err().map(|e| e.kind),
    );
    assert_eq!(refused, Some(ErrorKind::Forbidden));
}
