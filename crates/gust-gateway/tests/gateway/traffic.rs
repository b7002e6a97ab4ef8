//! Routing, versions, rate limits and CORS.

use http::{Method, Request, StatusCode};

use crate::common::*;

const TOML: &str = r#"
[[gateway.consumer]]
name = "mobile"
key = "mobile-key-0123456789"

[[gateway.consumer]]
name = "free-plan"
key = "free-key-0123456789ab"
rate_limit = "3/m"

[[gateway.route]]
name = "orders-v2-header"
path = "/api/orders/{id}"
headers = { "api-version" = "2" }
target = { function = "orders-v2" }

[[gateway.route]]
name = "orders-v1"
path = "/api/orders/{id}"
methods = ["GET", "POST"]
target = { function = "orders-v1", rewrite = "/orders/{id}" }
cors = { origins = ["https://app.example"], headers = ["content-type", "authorization"], expose_headers = ["x-request-id"] }

[[gateway.route]]
name = "v2"
prefix = "/api/v2"
target = { function = "orders-v2" }

[[gateway.route]]
name = "tenant"
prefix = "/"
host = "*.tenants.example"
target = { function = "tenant" }

[[gateway.route]]
name = "limited"
prefix = "/limited"
target = { function = "limited" }
rate_limit = { per_ip = "3/m" }

[[gateway.route]]
name = "consumer-limited"
prefix = "/consumer"
target = { function = "limited" }
auth = { keys = true }
rate_limit = { per_consumer = "2/m", per_ip = "100/s" }

[[gateway.route]]
name = "plan-limited"
prefix = "/plan"
target = { function = "limited" }
auth = { keys = true }
"#;

#[tokio::test]
async fn routes_by_path_version_header_host_and_method() {
    let (base, gw) = start_gateway(TOML, echo_functions()).await;
    let (s, _, body) = get(&format!("{base}/api/orders/7?x=1"), &[]).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "function=orders-v1 path=/orders/7?x=1")
    );
    let (_, _, body) = get(&format!("{base}/api/orders/7"), &[("api-version", "2")]).await;
    assert_eq!(body, "function=orders-v2 path=/api/orders/7");
    let (_, _, body) = get(&format!("{base}/api/v2/orders/7"), &[]).await;
    assert_eq!(body, "function=orders-v2 path=/api/v2/orders/7");
    let (_, _, body) = get(
        &format!("{base}/anything"),
        &[("host", "acme.tenants.example:8080")],
    )
    .await;
    assert_eq!(body, "function=tenant path=/anything");

    let req = Request::delete(format!("{base}/api/orders/7"))
        .body(gust_gateway::empty())
        .unwrap();
    let (s, h, _) = send(req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h["allow"], "GET, POST");
    let (s, _, body) = get(&format!("{base}/nowhere"), &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no_route"));
    let st = gw.status();
    assert_eq!(
        (st.gateway.not_found, st.gateway.method_not_allowed),
        (1, 1)
    );
}

#[tokio::test]
async fn rate_limits_with_headers() {
    let (base, gw) = start_gateway(TOML, echo_functions()).await;
    let url = format!("{base}/limited");
    for left in ["2", "1", "0"] {
        let (s, h, _) = get(&url, &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], left);
    }
    let (s, h, body) = get(&url, &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((19..=20).contains(&retry), "{retry}");
    assert_eq!(h["ratelimit-remaining"], "0");
    let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&reset), "{reset}");
    assert!(body.contains("rate_limited"));

    // Per consumer: the key's bucket, whatever the IP.
    let url = format!("{base}/consumer");
    let key = [("x-api-key", "mobile-key-0123456789")];
    assert_eq!(get(&url, &key).await.0, StatusCode::OK);
    let (s, h, _) = get(&url, &key).await;
    assert_eq!(
        (s, h["ratelimit-limit"].to_str().unwrap()),
        (StatusCode::OK, "2")
    );
    assert_eq!(get(&url, &key).await.0, StatusCode::TOO_MANY_REQUESTS);
    let st = gw.status();
    assert_eq!(
        (st.routes[4].rate_limited, st.routes[5].rate_limited),
        (1, 1)
    );

    // A consumer's plan: one bucket for all its routes, tighter than the
    // route's own per-consumer limit here; other consumers are not affected.
    let free = [("x-api-key", "free-key-0123456789ab")];
    let (s, h, _) = get(&format!("{base}/consumer/a"), &free).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            h["ratelimit-limit"].to_str().unwrap(),
            h["ratelimit-remaining"].to_str().unwrap()
        ),
        ("2", "1"),
        "the route's 2/m is the tightest so far"
    );
    let (s, h, _) = get(&format!("{base}/plan/b"), &free).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            h["ratelimit-limit"].to_str().unwrap(),
            h["ratelimit-remaining"].to_str().unwrap()
        ),
        ("3", "1"),
        "the plan's bucket counts both routes"
    );
    assert_eq!(
        get(&format!("{base}/plan/c"), &free).await.0,
        StatusCode::OK
    );
    let (s, h, body) = get(&format!("{base}/plan/d"), &free).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(h["ratelimit-limit"], "3");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(
        get(&format!("{base}/plan/e"), &key).await.0,
        StatusCode::OK,
        "the mobile consumer has no plan"
    );
    assert_eq!(gw.status().routes[6].rate_limited, 1);
}

#[tokio::test]
async fn cors_preflight_and_simple_requests() {
    let (base, gw) = start_gateway(TOML, echo_functions()).await;
    let url = format!("{base}/api/orders/7");
    let preflight = |origin: &str, method: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(&url)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .body(gust_gateway::empty())
            .unwrap()
    };
    let (s, h, _) = send(preflight("https://app.example", "POST")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, authorization"
    );
    assert_eq!(h["access-control-max-age"], "600");
    let (s, h, _) = send(preflight("https://evil.example", "POST")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(h.get("access-control-allow-origin").is_none());
    assert_eq!(
        send(preflight("https://app.example", "DELETE")).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let (s, h, _) = get(&url, &[("origin", "https://app.example")]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-expose-headers"], "x-request-id");
    assert_eq!(h["vary"], "Origin");
    let (_, h, _) = get(&url, &[("origin", "https://evil.example")]).await;
    assert!(h.get("access-control-allow-origin").is_none());
    assert_eq!(gw.status().routes[1].cors_preflights, 2);
}
