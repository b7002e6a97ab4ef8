//! API keys, function keys and JWTs (HS256, and ES256 from a JWKS file and URL).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gust_gateway::{Gateway, GatewayConfig, KeyCheck};
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::common::*;

const SECRET: &str = "a-very-long-test-secret-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A P-256 key pair: its signing key and its public JWK.
fn es256_key(kid: &str) -> (EncodingKey, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn es256(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_string());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn call(base: &str, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let (s, _, body) = get(&format!("{base}{path}"), &headers).await;
    (s, body)
}

#[tokio::test]
async fn hs256_accepts_and_rejects() {
    let up = Upstream::start().await;
    let toml = format!(
        r#"
        [[gateway.route]]
        name = "orders"
        prefix = "/orders"
        target = {{ upstream = "{}" }}
        auth = {{ jwt = {{ hs256_secret = "{SECRET}", issuer = "https://idp.test", audience = "orders", scopes = ["orders:read"], claims = {{ tenant = "acme" }} }} }}
        "#,
        up.url
    );
    let (base, gw) = start_gateway(&toml, echo_functions()).await;
    let good = json!({"sub": "ann", "iss": "https://idp.test", "aud": "orders", "exp": now() + 600, "scope": "orders:read orders:write", "tenant": "acme"});

    let (s, body) = call(&base, "/orders", Some(&hs256(&good, SECRET))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["headers"]["x-gust-consumer"], "ann");

    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let cases = [
        (
            hs256(&expired, SECRET),
            StatusCode::UNAUTHORIZED,
            "token expired",
        ),
        (
            hs256(&good, "another-secret-that-is-long-enough"),
            StatusCode::UNAUTHORIZED,
            "signature is invalid",
        ),
        (
            hs256(
                &json!({"sub": "ann", "iss": "https://idp.test", "aud": "orders", "exp": now() + 600, "scope": "orders:write", "tenant": "acme"}),
                SECRET,
            ),
            StatusCode::FORBIDDEN,
            "lacks scope `orders:read`",
        ),
        (
            hs256(
                &json!({"sub": "ann", "iss": "https://idp.test", "aud": "orders", "exp": now() + 600, "scope": "orders:read", "tenant": "other"}),
                SECRET,
            ),
            StatusCode::FORBIDDEN,
            "claim `tenant`",
        ),
        (
            hs256(
                &json!({"sub": "ann", "iss": "https://evil.test", "aud": "orders", "exp": now() + 600, "scope": "orders:read", "tenant": "acme"}),
                SECRET,
            ),
            StatusCode::UNAUTHORIZED,
            "issuer",
        ),
        (
            hs256(
                &json!({"sub": "ann", "iss": "https://idp.test", "aud": "orders", "scope": "orders:read", "tenant": "acme"}),
                SECRET,
            ),
            StatusCode::UNAUTHORIZED,
            "required claim",
        ),
        (
            "not-a-jwt".to_string(),
            StatusCode::UNAUTHORIZED,
            "malformed",
        ),
        (
            "eyJhbGciOiJIUzI1NiJ9.!!!.???".to_string(),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        // alg=none must never pass.
        (
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(good.to_string())
            ),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
    ];
    for (token, want, reason) in cases {
        let (s, body) = call(&base, "/orders", Some(&token)).await;
        assert_eq!(s, want, "{token}: {body}");
        assert!(body.contains(reason), "want `{reason}` in {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let (s, body) = call(&base, "/orders", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("missing bearer token"));
    // Still up and serving.
    assert_eq!(
        call(&base, "/orders", Some(&hs256(&good, SECRET))).await.0,
        StatusCode::OK
    );
    assert_eq!(gw.status().routes[0].auth_failures, 10);
}

#[tokio::test]
async fn es256_from_jwks_file_and_url() {
    let up = Upstream::start().await;
    let (key, jwk) = es256_key("k1");
    let (other_key, _) = es256_key("k1");
    let jwks = json!({ "keys": [jwk] }).to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, &jwks).unwrap();
    *up.jwks.lock().unwrap() = jwks;
    let toml = format!(
        r#"
        [[gateway.route]]
        name = "file"
        prefix = "/file"
        target = {{ function = "f" }}
        auth = {{ jwt = {{ jwks_file = "{}", scopes = ["read"] }} }}

        [[gateway.route]]
        name = "url"
        prefix = "/url"
        target = {{ function = "f" }}
        auth = {{ jwt = {{ jwks_url = "{}/jwks.json", scopes = ["read"] }} }}
        "#,
        file.display(),
        up.url
    );
    let (base, _gw) = start_gateway(&toml, echo_functions()).await;
    let claims = json!({"sub": "bob", "exp": now() + 600, "scp": ["read"]});
    let expired = json!({"sub": "bob", "exp": now() - 3600, "scp": ["read"]});
    let no_scope = json!({"sub": "bob", "exp": now() + 600, "scp": ["write"]});
    for path in ["/file", "/url"] {
        assert_eq!(
            call(&base, path, Some(&es256(&claims, &key, "k1"))).await.0,
            StatusCode::OK,
            "{path}"
        );
        let (s, body) = call(&base, path, Some(&es256(&claims, &other_key, "k1"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(body.contains("signature is invalid"), "{body}");
        let (s, body) = call(&base, path, Some(&es256(&expired, &key, "k1"))).await;
        assert_eq!(
            (s, body.contains("expired")),
            (StatusCode::UNAUTHORIZED, true),
            "{body}"
        );
        let (s, body) = call(&base, path, Some(&es256(&no_scope, &key, "k1"))).await;
        assert_eq!(
            (s, body.contains("scope")),
            (StatusCode::FORBIDDEN, true),
            "{body}"
        );
        // An HS256 token must not be accepted by a JWKS-only route.
        let (s, _) = call(&base, path, Some(&hs256(&claims, SECRET))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // The URL was fetched once and cached.
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn api_keys_and_function_keys() {
    let up = Upstream::start().await;
    let toml = format!(
        r#"
        [[gateway.consumer]]
        name = "mobile"
        key = "mobile-key-0123456789"

        [[gateway.consumer]]
        name = "partner"
        keys = ["partner-key-0123456789"]

        [[gateway.route]]
        name = "keyed"
        prefix = "/keyed"
        target = {{ upstream = "{}" }}
        auth = {{ keys = true, consumers = ["mobile"] }}

        [[gateway.route]]
        name = "fn"
        prefix = "/fn"
        target = {{ function = "secret-fn" }}
        auth = {{ function_keys = true }}
        "#,
        up.url
    );
    let config = GatewayConfig::from_manifest(&toml).unwrap();
    let check: Arc<dyn KeyCheck> = Arc::new(
        |route: &str, function: Option<&str>, req: &http::request::Parts| {
            assert_eq!((route, function), ("fn", Some("secret-fn")));
            match req.headers.get("x-functions-key") {
                Some(k) if k == "fn-key" => Ok(()),
                Some(_) => Err("wrong function key".to_string()),
                None => Err("missing function key".to_string()),
            }
        },
    );
    let gw = Gateway::new(config, echo_functions())
        .unwrap()
        .with_key_check(check);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(gust_gateway::serve(listener, gw.clone()));

    let url = format!("{base}/keyed");
    let (s, _, body) = get(
        &url,
        &[
            ("x-api-key", "mobile-key-0123456789"),
            ("x-gust-consumer", "spoofed"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["headers"]["x-gust-consumer"], "mobile");
    let (s, _, body) = get(&url, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("missing API key"));
    assert_eq!(
        get(&url, &[("x-api-key", "nope")]).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, body) = get(&url, &[("x-api-key", "partner-key-0123456789")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("partner"));

    let url = format!("{base}/fn");
    assert_eq!(
        get(&url, &[("x-functions-key", "fn-key")]).await.0,
        StatusCode::OK
    );
    let (s, _, body) = get(&url, &[("x-functions-key", "bad")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("wrong function key"));
}
