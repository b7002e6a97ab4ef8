//! Upstream HTTP targets: the pooled client, a client connection's own
//! upstream connection ([`Affinity`]), one guarded attempt through the
//! circuit breaker, and WebSocket tunnels.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
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

/// How long opening an upstream connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most idle connections the pool keeps per upstream, and most client
/// connections with an upstream connection of their own ([`Affinity`]).
const MAX_CONNECTIONS_KEPT: usize = 256;

/// Whether requests to HTTP/1 upstreams go out with `writev()` (head and
/// body chunks as separate buffers) or copied into one buffer and sent
/// with one `send()`. Off: on Linux the vectored path costs more kernel
/// time (`vfs_writev`, the file position lock) than copying a head saves,
/// about 2 % of the gateway's throughput (`bench/BENCHMARKS.md`, "A core
/// of its own"). The buffer keeps its size for the connection's
/// life, so this is for upstream connections only: they are bounded in
/// number, and a request body arrives in pieces no larger than the client
/// connection's read buffer. Responses to clients, whose connections are
/// many and whose bodies come in pieces as large as the upstream sends,
/// keep hyper's vectored writes, which hold no copy.
pub(crate) const WRITEV: bool = false;

/// The pooled upstream client (`http://` and `https://`).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds a client; `http2` speaks HTTP/2 (with prior knowledge over
/// plain TCP, by ALPN over TLS). TLS trusts `tls`'s roots.
pub(crate) fn client(http2: bool, tls: &rustls::ClientConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
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
    b.http1_writev(WRITEV)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(MAX_CONNECTIONS_KEPT);
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
    /// `Host` for HTTP/1 requests, as the pooled client writes it; `None`
    /// for upstreams that [`Affinity`] leaves to the pool (TLS, HTTP/2).
    affine_host: Option<HeaderValue>,
    /// Open [`Affinity`] connections to this upstream.
    affine_open: AtomicUsize,
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
        // What hyper's pooled client puts in `Host`: the host, and the port
        // unless it is the scheme's default.
        let affine_host = (scheme == Scheme::HTTP && !http2)
            .then(|| match authority.port_u16() {
                Some(p) if p != 80 => HeaderValue::from_str(&format!("{}:{p}", authority.host())),
                _ => HeaderValue::from_str(authority.host()),
            })
            .and_then(Result::ok);
        Ok(Upstream {
            affine_host,
            affine_open: AtomicUsize::new(0),
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
    Failed(Failure),
}

/// A failed upstream call.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Through the pooled client.
    Pooled(hyper_util::client::legacy::Error),
    /// Over a client connection's own upstream connection ([`Affinity`]).
    Affine(hyper::Error),
}

impl Failure {
    /// Whether the upstream could not be reached at all.
    pub fn is_connect(&self) -> bool {
        match self {
            Failure::Pooled(e) => e.is_connect(),
            Failure::Affine(_) => false, // that connection was open
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Pooled(e) => e.fmt(f),
            Failure::Affine(e) => e.fmt(f),
        }
    }
}

/// A client connection's own HTTP/1 connection to one plain-`http://`
/// upstream. While a client sends its requests one after another (as
/// HTTP/1 clients do), each goes over the same upstream connection, which
/// saves the pool's work per request (checkout, key hashing, `Host`
/// formatting, the return). The connection is opened in the background on
/// the client connection's first request to such an upstream (that request
/// and any while it is busy, closed or not opened take the pool), at most
/// [`MAX_CONNECTIONS_KEPT`] per upstream, and closes with the client's.
/// Breaker, timeout and retries apply as to pooled requests.
#[derive(Default)]
pub(crate) struct Affinity {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The upstream this client connection is bound to (its address), 0
    /// before the first request; [`NO_AFFINITY`] once that failed.
    upstream: usize,
    /// The idle connection (or one still reading a response body).
    sender: Option<SendRequest<Body>>,
    /// A request has the connection (HTTP/2 clients send several at once).
    in_use: bool,
    connecting: bool,
}

/// Bound to no upstream: every request takes the pool.
const NO_AFFINITY: usize = usize::MAX;

impl Affinity {
    fn key(upstream: &Upstream) -> usize {
        upstream as *const Upstream as usize
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idle connection to `upstream`, lent to one request at a time;
    /// (re)opens one in the background when there is none.
    fn take(self: &Arc<Self>, upstream: &Arc<Upstream>) -> Option<Lease<'_>> {
        upstream.affine_host.as_ref()?;
        let key = Self::key(upstream);
        let mut slot = self.lock();
        if slot.upstream != key {
            if slot.upstream != 0 {
                return None; // bound to another upstream, or failed
            }
            slot.upstream = key;
        }
        if slot.in_use {
            return None;
        }
        match slot.sender.take() {
            Some(s) if s.is_ready() => {
                slot.in_use = true;
                Some(Lease {
                    affinity: self,
                    sender: Some(s),
                    answered: false,
                })
            }
            Some(s) if !s.is_closed() => {
                slot.sender = Some(s); // still reading a response body
                None
            }
            _ => {
                // Never opened, or closed (the upstream ended it).
                if !slot.connecting {
                    if upstream.affine_open.fetch_add(1, Ordering::Relaxed) < MAX_CONNECTIONS_KEPT {
                        slot.connecting = true;
                        tokio::spawn(open(Arc::downgrade(self), upstream.clone()));
                    } else {
                        upstream.affine_open.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                None
            }
        }
    }
}

/// A client connection's upstream connection, lent to one request. Given
/// back when dropped after a response head came over it; else (an error,
/// or the request's timeout dropped it mid-way) the connection is closed
/// and the next request opens another.
struct Lease<'a> {
    affinity: &'a Affinity,
    sender: Option<SendRequest<Body>>,
    answered: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut slot = self.affinity.lock();
        slot.in_use = false;
        if self.answered {
            slot.sender = self.sender.take();
        }
    }
}

/// Opens `affinity`'s connection to `upstream` (an `http://` HTTP/1 one),
/// unless the client connection is gone by then. Counted in
/// `upstream.affine_open` (by the caller) until it closes.
async fn open(affinity: Weak<Affinity>, upstream: Arc<Upstream>) {
    let opened = async {
        let host = upstream.authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = upstream.authority.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let _ = stream.set_nodelay(true);
        hyper::client::conn::http1::Builder::new()
            .writev(WRITEV)
            .handshake(TokioIo::new(stream))
            .await
            .ok()
    };
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, opened)
        .await
        .ok()
        .flatten();
    let sender = opened.map(|(sender, conn)| {
        let counted = upstream.clone();
        tokio::spawn(async move {
            let _ = conn.await;
            counted.affine_open.fetch_sub(1, Ordering::Relaxed);
        });
        sender
    });
    if sender.is_none() {
        upstream.affine_open.fetch_sub(1, Ordering::Relaxed);
    }
    let Some(affinity) = affinity.upgrade() else {
        return; // dropping the sender closes the connection
    };
    let mut slot = affinity.lock();
    slot.connecting = false;
    match sender {
        Some(s) => slot.sender = Some(s),
        None => slot.upstream = NO_AFFINITY,
    }
}

/// Sends `req` over the client connection's own upstream connection when
/// it has an idle one, else (or when that connection turns out closed
/// before the request went out) through the pool.
async fn send(
    client: &HttpClient,
    upstream: &Arc<Upstream>,
    affinity: Option<&Arc<Affinity>>,
    mut req: Request<Body>,
) -> Result<Response<Incoming>, Failure> {
    if let Some(affinity) = affinity
        && let Some(host) = &upstream.affine_host
        && req.method() != Method::CONNECT
        && let Some(mut lease) = affinity.take(upstream)
        && let Some(sender) = lease.sender.as_mut()
    {
        // What the pooled client does for HTTP/1: `Host` when absent, and
        // the URI in origin form.
        let absolute = req.uri().clone();
        req.headers_mut()
            .entry(header::HOST)
            .or_insert_with(|| host.clone());
        if let Some(pq) = absolute.path_and_query() {
            *req.uri_mut() = Uri::from(pq.clone());
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                lease.answered = true;
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // Not sent (the connection had closed): the pool's turn.
                Some(mut unsent) => {
                    *unsent.uri_mut() = absolute;
                    req = unsent;
                }
                None => return Err(Failure::Affine(e.into_error())),
            },
        }
    }
    client.request(req).await.map_err(Failure::Pooled)
}

/// Sends one request through the upstream's breaker with a timeout.
/// `client_fault` tells, after the fact, whether a failure was caused by the
/// client's own body (then it does not count against the upstream).
pub(crate) async fn attempt(
    client: &HttpClient,
    upstream: &Arc<Upstream>,
    affinity: Option<&Arc<Affinity>>,
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
    let outcome = match tokio::time::timeout(timeout, send(client, upstream, affinity, req)).await {
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
