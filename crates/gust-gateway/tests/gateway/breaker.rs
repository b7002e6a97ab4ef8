//! The circuit breaker against a real upstream that fails and recovers.

use std::time::{Duration, Instant};

use gust_gateway::BreakerState;
use http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let up = Upstream::start().await;
    let toml = format!(
        r#"
        [[gateway.route]]
        name = "api"
        prefix = "/api"
        target = {{ upstream = "{}" }}
        breaker = {{ failure_ratio = 0.5, min_calls = 4, window = "10s", open_for = "400ms", half_open_calls = 2 }}
        "#,
        up.url
    );
    let (base, gw) = start_gateway(&toml, echo_functions()).await;
    let url = format!("{base}/api/x");
    let state = || gw.status().upstreams[0].breaker.state;

    for _ in 0..2 {
        assert_eq!(get(&url, &[]).await.0, StatusCode::OK);
    }
    up.set_mode(FAIL);
    // 2 ok + 2 failures = 4 calls at 50 %: the second failure opens it.
    assert_eq!(get(&url, &[]).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state(), BreakerState::Closed);
    assert_eq!(get(&url, &[]).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state(), BreakerState::Open);

    // Open: fails fast without touching the upstream.
    let hits = up.hits();
    let t = Instant::now();
    for _ in 0..5 {
        let (status, headers, body) = get(&url, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("breaker_open"), "{body}");
        assert!(headers.contains_key("retry-after"));
    }
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(up.hits(), hits, "no calls reach the upstream while open");
    let s = gw.status();
    assert_eq!(s.routes[0].breaker_rejected, 5);
    assert_eq!(s.upstreams[0].breaker.opened_total, 1);

    // Still failing after open_for: the probe fails and it opens again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(get(&url, &[]).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(state(), BreakerState::Open);
    assert_eq!(gw.status().upstreams[0].breaker.opened_total, 2);

    // Recovered: half-open probes succeed and close it.
    up.set_mode(OK);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(state(), BreakerState::HalfOpen);
    assert_eq!(get(&url, &[]).await.0, StatusCode::OK);
    assert_eq!(state(), BreakerState::HalfOpen);
    assert_eq!(get(&url, &[]).await.0, StatusCode::OK);
    assert_eq!(state(), BreakerState::Closed);
    for _ in 0..5 {
        assert_eq!(get(&url, &[]).await.0, StatusCode::OK);
    }
    let json = serde_json::to_value(gw.status()).unwrap();
    assert_eq!(json["upstreams"][0]["breaker"]["state"], "closed");
}

#[tokio::test]
async fn timeouts_and_dead_upstreams_count_as_failures() {
    let up = Upstream::start().await;
    up.slow.store(1000, std::sync::atomic::Ordering::SeqCst);
    up.set_mode(SLOW);
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let toml = format!(
        r#"
        [[gateway.route]]
        name = "slow"
        prefix = "/slow"
        timeout = "150ms"
        target = {{ upstream = "{}" }}
        breaker = {{ min_calls = 2, failure_ratio = 1.0, open_for = "10s" }}

        [[gateway.route]]
        name = "dead"
        prefix = "/dead"
        target = {{ upstream = "{dead_url}" }}
        breaker = {{ min_calls = 2, open_for = "10s" }}
        "#,
        up.url
    );
    let (base, gw) = start_gateway(&toml, echo_functions()).await;
    for _ in 0..2 {
        let t = Instant::now();
        assert_eq!(
            get(&format!("{base}/slow"), &[]).await.0,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(t.elapsed() < Duration::from_millis(900));
        assert_eq!(
            get(&format!("{base}/dead"), &[]).await.0,
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(
        get(&format!("{base}/slow"), &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&format!("{base}/dead"), &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let s = gw.status();
    assert_eq!(s.routes[0].timeouts, 2);
    assert_eq!(s.routes[1].upstream_errors, 2);
    assert!(
        s.upstreams
            .iter()
            .all(|u| u.breaker.state == BreakerState::Open)
    );
}
