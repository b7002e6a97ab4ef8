//! Upstream HTTP targets: the pooled client, one guarded attempt through the
//! circuit breaker, and WebSocket tunnels.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::Body;
use crate::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::status::{UpstreamStatus, bump};

/// The pooled upstream client.
pub(crate) type HttpClient = Client<HttpConnector, Body>;

/// Builds a client; `http2` speaks HTTP/2 with prior knowledge (h2c).
pub(crate) fn client(http2: bool) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256);
    if http2 {
        b.http2_only(true);
    }
    b.build(connector)
}

/// An upstream: its address, protocol and breaker.
pub(crate) struct Upstream {
    pub url: String,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    pub http2: bool,
    pub breaker: Breaker,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
}

impl Upstream {
    /// Parses `http://host:port[/base]`.
    pub fn parse(url: &str, http2: bool, breaker: BreakerSettings) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("`{url}` has no scheme"))?;
        if scheme != Scheme::HTTP {
            return Err(format!(
                "`{url}` uses {scheme}; only http:// upstreams are supported (terminate TLS in front of the upstream or use a sidecar)"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{url}` has no host"))?;
        if uri.query().is_some() {
            return Err(format!(
                "`{url}` has a query; give only scheme, host, port and base path"
            ));
        }
        Ok(Upstream {
            url: url.trim_end_matches('/').to_string(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            http2,
            breaker: Breaker::new(breaker),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The upstream URI for a request path (already rewritten) and query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut pq = crate::rewrite::join(&self.base_path, path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(pq)?)
            .build()
    }

    pub fn status(&self) -> UpstreamStatus {
        use std::sync::atomic::Ordering::Relaxed;
        UpstreamStatus {
            url: self.url.clone(),
            calls: self.calls.load(Relaxed),
            failures: self.failures.load(Relaxed),
            breaker: self.breaker.snapshot(),
        }
    }
}

/// The result of one attempt.
pub(crate) enum Attempt {
    /// The upstream answered (any status).
    Response(Response<Incoming>),
    /// The breaker is open; retry after this long.
    BreakerOpen(Duration),
    /// No response head within the route's timeout.
    Timeout,
    /// Connection or protocol error.
    Failed(hyper_util::client::legacy::Error),
}

/// Sends one request through the upstream's breaker with a timeout.
/// `client_fault` tells, after the fact, whether a failure was caused by the
/// client's own body (then it does not count against the upstream).
pub(crate) async fn attempt(
    client: &HttpClient,
    upstream: &Upstream,
    mut req: Request<Body>,
    timeout: Duration,
    client_fault: impl Fn() -> bool,
) -> Attempt {
    let guard = match upstream.breaker.acquire() {
        Ok(g) => g,
        Err(retry_after) => return Attempt::BreakerOpen(retry_after),
    };
    *req.version_mut() = if upstream.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    bump(&upstream.calls);
    let outcome = match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Attempt::Timeout,
        Ok(Err(e)) => Attempt::Failed(e),
        Ok(Ok(resp)) => Attempt::Response(resp),
    };
    let success = match &outcome {
        Attempt::Response(r) => !r.status().is_server_error(),
        _ => false,
    };
    if !success && client_fault() {
        drop(guard); // releases the permit without judging the upstream
        return outcome;
    }
    if !success {
        bump(&upstream.failures);
    }
    match guard.record(success) {
        Some(BreakerState::Open) => {
            tracing::warn!(upstream = %upstream.url, "circuit breaker opened")
        }
        Some(BreakerState::Closed) => {
            tracing::info!(upstream = %upstream.url, "circuit breaker closed")
        }
        _ => {}
    }
    outcome
}

/// Joins the client's and the upstream's upgraded connections and copies
/// bytes both ways until either side closes.
pub(crate) fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade, request_id: String) {
    tokio::spawn(async move {
        let (d, u) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(request_id, error = %e, "upgrade failed");
                return;
            }
        };
        let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
        match tokio::io::copy_bidirectional(&mut d, &mut u).await {
            Ok((up, down)) => tracing::debug!(request_id, up, down, "tunnel closed"),
            Err(e) => tracing::debug!(request_id, error = %e, "tunnel ended"),
        }
    });
}
