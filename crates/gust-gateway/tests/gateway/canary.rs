//! Weighted canary split and sticky assignment (through `Gateway::handle`).

use std::net::SocketAddr;

use gust_gateway::{Gateway, GatewayConfig};
use http::Request;
use http_body_util::BodyExt;

use crate::common::echo_functions;

const TOML: &str = r#"
[[gateway.route]]
name = "orders"
path = "/api/orders/{*rest}"
target = { function = "orders-v1" }
canary = { target = { function = "orders-v2" }, weight = 10 }

[[gateway.route]]
name = "sticky"
path = "/sticky"
target = { function = "stable" }
canary = { target = { function = "canary" }, weight = 10, sticky = "header:x-user" }
"#;

async fn target(gw: &Gateway, path: &str, user: Option<&str>) -> String {
    let client: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut b = Request::get(path);
    if let Some(u) = user {
        b = b.header("x-user", u);
    }
    let resp = gw
        .handle(b.body(gust_gateway::empty()).unwrap(), client)
        .await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

#[tokio::test]
async fn split_is_within_two_points_of_90_10() {
    let gw = Gateway::new(
        GatewayConfig::from_manifest(TOML).unwrap(),
        echo_functions(),
    )
    .unwrap();
    let n = 10_000;
    let mut canary = 0;
    for i in 0..n {
        if target(&gw, &format!("/api/orders/{i}"), None).await == "function=orders-v2" {
            canary += 1;
        }
    }
    let pct = f64::from(canary) * 100.0 / f64::from(n);
    assert!((pct - 10.0).abs() <= 2.0, "canary share {pct}%");
    let s = &gw.status().routes[0];
    assert_eq!(s.canary, canary as u64);
    assert_eq!(s.primary + s.canary, n as u64);
}

#[tokio::test]
async fn sticky_assignment_is_stable_and_split() {
    let gw = Gateway::new(
        GatewayConfig::from_manifest(TOML).unwrap(),
        echo_functions(),
    )
    .unwrap();
    let again = Gateway::new(
        GatewayConfig::from_manifest(TOML).unwrap(),
        echo_functions(),
    )
    .unwrap();
    let mut canary_users = 0;
    for u in 0..2000 {
        let user = format!("user-{u}");
        let first = target(&gw, "/sticky", Some(&user)).await;
        for _ in 0..3 {
            assert_eq!(target(&gw, "/sticky", Some(&user)).await, first);
        }
        // Same answer from another gateway instance (e.g. after a restart).
        assert_eq!(target(&again, "/sticky", Some(&user)).await, first);
        if first == "function=canary" {
            canary_users += 1;
        }
    }
    let pct = f64::from(canary_users) * 100.0 / 2000.0;
    assert!((pct - 10.0).abs() <= 2.5, "sticky canary share {pct}%");
}
