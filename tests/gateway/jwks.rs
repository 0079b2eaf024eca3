//! Keys fetched from an identity provider's JWKS URL (`auth.jwt.jwks_url`),
//! against a key-set server the test controls: a worker that never got the
//! keys answers 503 and recovers by itself, a rotation is followed without
//! a reload (the new key accepted, the withdrawn one refused, remembered
//! tokens included), and a broken, oversized or missing document keeps the
//! last good keys; and the set is fetched over HTTPS from a private CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use routemq_client::RequestClient;
use routemq_tests::tls::Authority;
use routemq_tests::{eventually, upstream, Probes};
use serde_json::{json, Value};

use crate::mw::{self, ask_with, claims, error_type};
use crate::stack::Stack;

const EC_PRIVATE: &[u8] = include_bytes!("../../crates/routemq-gateway/testdata/ec_private.pem");
const RSA_PRIVATE: &[u8] = include_bytes!("../../crates/routemq-gateway/testdata/rsa_private.pem");
const EC_JWK: &str = include_str!("../../crates/routemq-gateway/testdata/ec_jwk.json");
const RSA_JWK: &str = include_str!("../../crates/routemq-gateway/testdata/rsa_jwk.json");

/// What the key-set server answers: a status and a body.
type Document = Arc<Mutex<(StatusCode, String)>>;

async fn key_server(document: Document) -> std::net::SocketAddr {
    upstream::serve(Router::new().route(
        "/jwks",
        get(move || {
            let document = Arc::clone(&document);
            async move { document.lock().clone() }
        }),
    ))
    .await
}

fn key_set(jwks: &[&str]) -> String {
    let keys: Vec<Value> = jwks
        .iter()
        .map(|jwk| serde_json::from_str(jwk).expect("jwk"))
        .collect();
    json!({ "keys": keys }).to_string()
}

fn token(algorithm: Algorithm, kid: &str) -> String {
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE),
    }
    .expect("key");
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    let token = encode(&header, &claims("alice", &["user"]), &key).expect("token");
    format!("Bearer {token}")
}

async fn status_of(client: &RequestClient, token: &str) -> (u16, String) {
    let reply = ask_with(
        client,
        "api/v1/users/get/1",
        "",
        &[("authorization", token)],
    )
    .await;
    (reply.status, error_type(&reply))
}

#[tokio::test]
async fn keys_from_the_identity_provider_follow_a_rotation_and_survive_its_failures() {
    let document: Document = Arc::new(Mutex::new((
        StatusCode::SERVICE_UNAVAILABLE,
        "down".to_string(),
    )));
    let server = key_server(Arc::clone(&document)).await;
    let config = mw::CONFIG.replace(
        r#"public_keys = [{ algorithm = "ES256", file = "{dir}/ec_public.pem" }]"#,
        &format!(
            "jwks_url = \"http://{server}/jwks\"\njwks_min_refresh = \"200ms\"\njwks_max_refresh = \"1s\"\njwks_max_bytes = 8192"
        ),
    );
    assert_ne!(config, mw::CONFIG, "the key source was swapped");
    let mut stack = Stack::start_with(0, 1, &config, false, &[("jwt.secret", mw::SECRET)]).await;
    let probes = Probes::new();
    stack.add_worker_with_env("worker-0", &[probes.env()]);
    let stack = mw::with_upstreams(stack).await;
    let client = stack.stack.client().await;
    let (ec, rsa) = (
        token(Algorithm::ES256, "ec-1"),
        token(Algorithm::RS256, "rsa-1"),
    );

    // Never fetched: retryable 503, not 401; HS256 tokens are unaffected.
    assert_eq!(
        status_of(&client, &ec).await,
        (503, "auth_unavailable".into())
    );
    assert_eq!(
        status_of(&client, &mw::bearer("alice", &["user"])).await.0,
        200
    );

    *document.lock() = (StatusCode::OK, key_set(&[EC_JWK]));
    eventually("the first key set", Duration::from_secs(10), || async {
        (status_of(&client, &ec).await.0 == 200).then_some(())
    })
    .await;

    // Rotation: the RSA key published, the EC key withdrawn.
    let rotated = Instant::now();
    *document.lock() = (StatusCode::OK, key_set(&[RSA_JWK]));
    eventually("the new key accepted", Duration::from_secs(10), || async {
        (status_of(&client, &rsa).await.0 == 200).then_some(())
    })
    .await;
    let followed = rotated.elapsed();
    eventually(
        "the withdrawn key refused",
        Duration::from_secs(10),
        || async { (status_of(&client, &ec).await == (401, "unauthorized".into())).then_some(()) },
    )
    .await;
    println!(
        "rotation followed in {followed:?}, withdrawn key refused after {:?}",
        rotated.elapsed()
    );

    // Failures keep the last good set: bad JSON, a document over
    // jwks_max_bytes (8 KiB), an error status.
    let mut oversized: Value = serde_json::from_str(&key_set(&[RSA_JWK])).expect("json");
    oversized["padding"] = json!("x".repeat(9000));
    let oversized = oversized.to_string();
    for (status, body) in [
        (StatusCode::OK, "{not json".to_string()),
        (StatusCode::OK, oversized),
        (StatusCode::INTERNAL_SERVER_ERROR, "broken".to_string()),
    ] {
        let failures = probes
            .metric("routemq_jwks_fetches_total", &[r#"outcome="error""#])
            .await;
        *document.lock() = (status, body);
        eventually("a failed fetch", Duration::from_secs(10), || async {
            let now = probes
                .metric("routemq_jwks_fetches_total", &[r#"outcome="error""#])
                .await;
            (now > failures).then_some(())
        })
        .await;
        assert_eq!(status_of(&client, &rsa).await.0, 200, "{status}");
    }
}

/// An HTTPS key-set server with a certificate from `authority`: one
/// request per connection, answered with `body` (a fixture small enough to
/// write by hand; no HTTP server crate serves TLS in this suite).
async fn https_key_server(authority: &Authority, body: String) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pem = authority.server("idp");
    let certs = CertificateDer::pem_file_iter(&pem.cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(&pem.key).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    upstream::upstreams().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.write_all(response.as_bytes()).await.ok();
                tls.shutdown().await.ok();
            });
        }
    });
    addr
}

#[tokio::test]
async fn keys_are_fetched_over_https_trusting_the_configured_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let authority = Authority::new(dir.path(), "idp-ca");
    let server = https_key_server(&authority, key_set(&[EC_JWK])).await;
    let ca = authority.ca.display().to_string();
    let config = mw::CONFIG.replace(
        r#"public_keys = [{ algorithm = "ES256", file = "{dir}/ec_public.pem" }]"#,
        &format!(
            "jwks_url = \"https://localhost:{}/jwks\"\njwks_ca_file = \"{ca}\"\njwks_min_refresh = \"200ms\"",
            server.port()
        ),
    );
    let mut stack = Stack::start_with(0, 1, &config, false, &[("jwt.secret", mw::SECRET)]).await;
    stack.add_worker("worker-0");
    let stack = mw::with_upstreams(stack).await;
    let client = stack.stack.client().await;
    let ec = token(Algorithm::ES256, "ec-1");
    eventually(
        "the key set over HTTPS",
        Duration::from_secs(10),
        || async { (status_of(&client, &ec).await.0 == 200).then_some(()) },
    )
    .await;
}
