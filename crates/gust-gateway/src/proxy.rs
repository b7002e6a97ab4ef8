//! Upstream HTTP targets: the pooled client, one guarded attempt through the
//! circuit breaker, and WebSocket tunnels.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::body::Body;
use crate::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::status::{UpstreamStatus, bump};

/// The pooled upstream client (`http://` and `https://`).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds a client; `http2` speaks HTTP/2 (with prior knowledge over
/// plain TCP, by ALPN over TLS). TLS trusts `tls`'s roots.
pub(crate) fn client(http2: bool, tls: &rustls::ClientConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(false);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http();
    let https = if http2 {
        https.enable_http2().wrap_connector(connector)
    } else {
        https.enable_http1().wrap_connector(connector)
    };
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256);
    if http2 {
        b.http2_only(true);
    }
    b.build(https)
}

/// TLS settings for `https://` upstreams and JWKS URLs: the system's root
/// certificates, plus those in `ca_file` (PEM) when given.
pub(crate) fn tls_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, String> {
    static SYSTEM: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    let system = SYSTEM.get_or_init(|| rustls_native_certs::load_native_certs().certs);
    let mut roots = rustls::RootCertStore::empty();
    let _ = roots.add_parsable_certificates(system.iter().cloned());
    if let Some(file) = ca_file {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read `{file}` ({e})"))?;
        if certs.is_empty() {
            return Err(format!("`{file}` holds no PEM certificate"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("`{file}` holds a certificate rustls refuses: {e}"))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
    /// Parses `http(s)://host:port[/base]`.
    pub fn parse(url: &str, http2: bool, breaker: BreakerSettings) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("`{url}` has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "`{url}` uses {scheme}; upstreams are http:// or https://"
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

    /// The upstream URI for a request whose path is `rewritten` or, when
    /// `None`, the request's own: then, without a base path, the request's
    /// path and query are reused as they are (no string to build and parse).
    pub fn uri_for(&self, request: &Uri, rewritten: Option<&str>) -> Result<Uri, http::Error> {
        if rewritten.is_none()
            && self.base_path.is_empty()
            && let Some(pq) = request.path_and_query()
            && pq.path().starts_with('/')
        {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            parts.path_and_query = Some(pq.clone());
            return Ok(Uri::from_parts(parts)?);
        }
        let path = rewritten.unwrap_or(request.path());
        self.uri(path, request.query())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_for_reuses_the_request_path_or_joins() {
        let plain =
            Upstream::parse("http://127.0.0.1:9/", false, BreakerSettings::default()).unwrap();
        let based = Upstream::parse("http://h:9/base/", false, BreakerSettings::default()).unwrap();
        for req in [
            "/",
            "/a/b?x=1&y",
            "/a?",
            "/%2Fa/b?q=%20",
            "http://other:1/p?q",
        ] {
            let req: Uri = req.parse().unwrap();
            for (u, rewritten) in [
                (&plain, None),
                (&based, None),
                (&plain, Some("/new")),
                (&based, Some("new")),
            ] {
                let path = rewritten.unwrap_or(req.path());
                assert_eq!(
                    u.uri_for(&req, rewritten).unwrap(),
                    u.uri(path, req.query()).unwrap(),
                    "{req} {rewritten:?}"
                );
            }
        }
        let req: Uri = "/x?q".parse().unwrap();
        assert_eq!(plain.uri_for(&req, None).unwrap(), "http://127.0.0.1:9/x?q");
    }
}
