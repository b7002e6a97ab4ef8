//! Counters and the serialisable status snapshot (`gust gateway status`, metrics).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::breaker::BreakerSnapshot;

/// Per-route counters.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    pub requests: AtomicU64,
    pub primary: AtomicU64,
    pub canary: AtomicU64,
    pub auth_failures: AtomicU64,
    pub rate_limited: AtomicU64,
    pub breaker_rejected: AtomicU64,
    pub timeouts: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub body_rejected: AtomicU64,
    pub retries: AtomicU64,
    pub cors_preflights: AtomicU64,
    pub status: [AtomicU64; 5],
}

/// Gateway-wide counters for requests that matched no route.
#[derive(Debug, Default)]
pub(crate) struct GlobalCounters {
    pub requests: AtomicU64,
    pub not_found: AtomicU64,
    pub method_not_allowed: AtomicU64,
    pub bad_requests: AtomicU64,
    pub headers_too_large: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl RouteCounters {
    pub fn count_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        bump(&self.status[class]);
    }

    pub fn snapshot(&self, name: &str) -> RouteStatus {
        RouteStatus {
            name: name.to_string(),
            requests: get(&self.requests),
            primary: get(&self.primary),
            canary: get(&self.canary),
            auth_failures: get(&self.auth_failures),
            rate_limited: get(&self.rate_limited),
            breaker_rejected: get(&self.breaker_rejected),
            timeouts: get(&self.timeouts),
            upstream_errors: get(&self.upstream_errors),
            body_rejected: get(&self.body_rejected),
            retries: get(&self.retries),
            cors_preflights: get(&self.cors_preflights),
            responses: Responses {
                informational: get(&self.status[0]),
                success: get(&self.status[1]),
                redirect: get(&self.status[2]),
                client_error: get(&self.status[3]),
                server_error: get(&self.status[4]),
            },
        }
    }
}

impl GlobalCounters {
    pub fn snapshot(&self) -> GlobalStatus {
        GlobalStatus {
            requests: get(&self.requests),
            not_found: get(&self.not_found),
            method_not_allowed: get(&self.method_not_allowed),
            bad_requests: get(&self.bad_requests),
            headers_too_large: get(&self.headers_too_large),
        }
    }
}

/// Everything [`crate::Gateway::status`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    /// Gateway-wide counters.
    pub gateway: GlobalStatus,
    /// One entry per route, in configuration order.
    pub routes: Vec<RouteStatus>,
    /// One entry per distinct upstream.
    pub upstreams: Vec<UpstreamStatus>,
}

/// Gateway-wide counters.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalStatus {
    /// All requests seen.
    pub requests: u64,
    /// Requests no route matched (404).
    pub not_found: u64,
    /// Requests whose path matched but method did not (405).
    pub method_not_allowed: u64,
    /// Requests refused before routing (bad path, 400).
    pub bad_requests: u64,
    /// Requests refused for oversized headers (431).
    pub headers_too_large: u64,
}

/// Counts by response status class.
#[derive(Debug, Clone, Serialize)]
pub struct Responses {
    /// 1xx.
    pub informational: u64,
    /// 2xx.
    pub success: u64,
    /// 3xx.
    pub redirect: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx.
    pub server_error: u64,
}

/// One route's counters.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    /// Route name.
    pub name: String,
    /// Requests routed here.
    pub requests: u64,
    /// Requests sent to the primary target.
    pub primary: u64,
    /// Requests sent to the canary target.
    pub canary: u64,
    /// Requests refused by auth (401/403).
    pub auth_failures: u64,
    /// Requests refused by rate limits (429).
    pub rate_limited: u64,
    /// Requests refused because the upstream's breaker was open (503).
    pub breaker_rejected: u64,
    /// Target timeouts (504).
    pub timeouts: u64,
    /// Upstream connection or protocol errors (502).
    pub upstream_errors: u64,
    /// Bodies refused as too large (413) or too slow (408).
    pub body_rejected: u64,
    /// Retries made.
    pub retries: u64,
    /// CORS preflights answered.
    pub cors_preflights: u64,
    /// Responses by status class.
    pub responses: Responses,
}

/// One upstream's health.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// Base URL.
    pub url: String,
    /// Calls made (attempts, including retries).
    pub calls: u64,
    /// Calls that failed (5xx, connect error, timeout).
    pub failures: u64,
    /// The circuit breaker.
    pub breaker: BreakerSnapshot,
}
