//! Authentication and authorization end to end, on one Redis and on a Redis Cluster.

use std::path::Path;
use std::time::Duration;

use routemq_tests::eventually;
use routemq_tests::routemq;
use serde_json::json;

use crate::mw::{self, ask_with, bearer, claims, error_type, sign, SECRET};
use crate::stack::BIN;

async fn credentials_are_verified_and_identity_is_asserted_upstream(cluster: bool) {
    let stack = mw::start(1, cluster).await;
    let client = stack.stack.client().await;
    let topic = "api/v1/users/get/42";

    let anonymous = ask_with(&client, topic, "", &[]).await;
    assert_eq!(
        (anonymous.status, error_type(&anonymous).as_str()),
        (401, "unauthorized")
    );
    assert_eq!(anonymous.property("www-authenticate"), Some("Bearer"));

    // A valid token; spoofed identity headers are dropped, the verified one is sent.
    let alice = bearer("alice", &["user"]);
    let reply = ask_with(
        &client,
        topic,
        "",
        &[
            ("authorization", &alice),
            ("x-user-id", "mallory"),
            ("x-consumer-id", "mallory"),
            ("x-authenticated-userid", "mallory"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let data = &reply.json()["data"];
    assert_eq!(data["user_id"], "alice");
    assert_eq!(
        data["identity_headers"],
        json!({"x-user-id": "alice", "x-user-auth": "user", "x-user-roles": "user"})
    );

    let mut expired = claims("alice", &[]);
    expired["exp"] = json!(1_000_000);
    let mut premature = claims("alice", &[]);
    premature["nbf"] = json!(4_000_000_000u64);
    let mut foreign = claims("alice", &[]);
    foreign["aud"] = json!("another-api");
    let forged = sign(
        &claims("alice", &["admin"]),
        b"not-the-secret-not-the-secret-xx",
    );
    let alg_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let refused = [
        (
            "expired",
            format!("Bearer {}", sign(&expired, SECRET.as_bytes())),
        ),
        (
            "nbf",
            format!("Bearer {}", sign(&premature, SECRET.as_bytes())),
        ),
        (
            "audience",
            format!("Bearer {}", sign(&foreign, SECRET.as_bytes())),
        ),
        ("signature", format!("Bearer {forged}")),
        ("alg none", format!("Bearer {alg_none}")),
        ("malformed", "Bearer abc.def".to_string()),
        ("scheme", "Basic YWxpY2U6cHc=".to_string()),
    ];
    for (case, authorization) in refused {
        let reply = ask_with(&client, topic, "", &[("authorization", &authorization)]).await;
        assert_eq!(reply.status, 401, "{case}: {}", reply.json());
        assert_eq!(error_type(&reply), "unauthorized", "{case}");
        let challenges = reply
            .user_properties
            .iter()
            .filter(|(name, _)| name == "www-authenticate")
            .count();
        assert_eq!(challenges, 1, "{case}: one challenge");
        assert!(
            reply.json().get("service").is_none(),
            "{case}: no upstream was chosen: {}",
            reply.json()
        );
    }

    // Roles per route: delete needs admin.
    let delete = "api/v1/users/delete/42";
    let reply = ask_with(&client, delete, "", &[("authorization", &alice)]).await;
    assert_eq!(
        (reply.status, error_type(&reply).as_str()),
        (403, "forbidden")
    );
    assert!(reply.json().get("service").is_none(), "{}", reply.json());
    let admin = bearer("root", &["admin"]);
    let reply = ask_with(&client, delete, "", &[("authorization", &admin)]).await;
    assert_eq!(reply.status, 200, "{}", reply.json());

    // A huge credential is refused before any verification.
    let huge = format!("Bearer {}", "a".repeat(4000));
    let reply = ask_with(&client, topic, "", &[("authorization", &huge)]).await;
    assert_eq!(reply.status, 431);

    // API keys: created and revoked through the CLI, hashed in Redis.
    let redis_url = stack.stack.store.url();
    let created = routemq(
        Path::new(BIN),
        &["api-keys", "create", "--name", "ci", "--roles", "admin"],
        &redis_url,
    )
    .expect("api key created");
    let field = |name: &str| {
        created
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .expect("cli prints id and key")
            .to_string()
    };
    let (key_id, key) = (field("id:"), field("key:"));
    let raw_keys = stack
        .stack
        .redis_client
        .hgetall::<std::collections::HashMap<String, String>, _>("{routemq}:api_keys")
        .await
        .expect("keys readable");
    assert!(
        raw_keys.keys().all(|hash| hash != &key),
        "keys are stored hashed"
    );

    let accepted = wait_for_status(&client, delete, &[("x-api-key", &key)], 200).await;
    assert_eq!(accepted.json()["data"]["user_id"], key_id.as_str());
    let unknown = ask_with(&client, topic, "", &[("x-api-key", "rmq_not_a_key")]).await;
    assert_eq!(unknown.status, 401);

    routemq(Path::new(BIN), &["api-keys", "revoke", &key_id], &redis_url).expect("revoked");
    wait_for_status(&client, delete, &[("x-api-key", &key)], 401).await;

    // The worker is unaffected by everything above.
    let reply = ask_with(&client, topic, "", &[("authorization", &alice)]).await;
    assert_eq!(reply.status, 200);
}

/// Polls until a request gets `status` (API key changes reach workers on their next refresh).
async fn wait_for_status(
    client: &routemq_client::RequestClient,
    topic: &str,
    headers: &[(&str, &str)],
    status: u16,
) -> routemq_client::Reply {
    let what = format!("a reply {status}");
    eventually(&what, Duration::from_secs(10), || async {
        let reply = ask_with(client, topic, "", headers).await;
        match reply.status == status {
            true => Ok(reply),
            false => Err(reply.json()),
        }
    })
    .await
}

use fred::prelude::HashesInterface;

/// With `issuer` and `audience` configured, a token signed by a trusted key
/// but without `iss` or `aud` is refused like one naming another issuer or
/// audience (jsonwebtoken checks them only when present), for a shared
/// secret and for a public key alike.
#[tokio::test]
async fn tokens_missing_a_configured_issuer_or_audience_are_unauthorized() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let stack = mw::start(1, false).await;
    let client = stack.stack.client().await;
    let topic = "api/v1/users/get/42";
    let es256 = |claims: &serde_json::Value| {
        let key = EncodingKey::from_ec_pem(mw::EC_PRIVATE).expect("ec key");
        encode(&Header::new(Algorithm::ES256), claims, &key).expect("token encodes")
    };
    let hs256 = |claims: &serde_json::Value| sign(claims, SECRET.as_bytes());
    type Signer<'a> = &'a dyn Fn(&serde_json::Value) -> String;
    let signers: [(&str, Signer<'_>); 2] = [("HS256", &hs256), ("ES256", &es256)];
    for (algorithm, signer) in signers {
        let complete = format!("Bearer {}", signer(&claims("alice", &["user"])));
        let reply = ask_with(&client, topic, "", &[("authorization", &complete)]).await;
        assert_eq!(reply.status, 200, "{algorithm} complete: {}", reply.json());
        for missing in ["iss", "aud"] {
            let mut partial = claims("alice", &["user"]);
            partial.as_object_mut().expect("object").remove(missing);
            let token = format!("Bearer {}", signer(&partial));
            let reply = ask_with(&client, topic, "", &[("authorization", &token)]).await;
            assert_eq!(
                (reply.status, error_type(&reply).as_str()),
                (401, "unauthorized"),
                "{algorithm} without {missing}: {}",
                reply.json()
            );
            assert_eq!(
                reply.property("www-authenticate"),
                Some("Bearer error=\"invalid_token\""),
                "{algorithm} without {missing}"
            );
        }
    }
}

#[tokio::test]
async fn credentials_on_one_redis() {
    credentials_are_verified_and_identity_is_asserted_upstream(false).await;
}

#[tokio::test]
async fn credentials_on_a_redis_cluster() {
    credentials_are_verified_and_identity_is_asserted_upstream(true).await;
}
