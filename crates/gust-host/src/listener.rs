//! The one HTTP accept loop every Gust listener runs (`gust up`, the
//! multi-app front, a cluster node): HTTP/1.1 and HTTP/2, optional TLS,
//! the same limits everywhere, and a graceful drain on shutdown.
//!
//! Listeners are bound with [`bind`] (or [`bind_std`]) for a deep accept
//! queue ([`BACKLOG`]).
//!
//! Limits:
//! - a client has `header_timeout` to send its first request head (also
//!   the TLS handshake and, for HTTP/1, every later head on a kept-alive
//!   connection, so an HTTP/1 connection idles at most that long);
//! - a connection with no request open for `idle_timeout` is closed
//!   (HTTP/2: `GOAWAY`, then closed);
//! - a request whose `Host` is missing (HTTP/1.1), repeated or not a valid
//!   `host[:port]` is answered 400 before any handler sees it; HTTP/1.0
//!   (and HTTP/2 without `:authority`) without `Host` is given the address
//!   the client connected to.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::body::{self, Body, Holding};
use crate::tls::ReloadingCert;

/// Default time a client has to send a request head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay open with no request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time shutdown waits for open requests.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);
/// How often the certificate files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(1);
/// Connections the kernel may hold for a listener before it accepts them
/// (capped by `net.core.somaxconn`). A burst of new connections, such as
/// clients reconnecting at once, waits here; past it their SYNs are
/// dropped and each such client waits 1 to 3 s for a retransmit. The 128
/// of std and tokio overflowed at a few hundred connections in a burst on
/// a busy machine (bench/BENCHMARKS.md, "Connections").
pub const BACKLOG: i32 = 4096;

/// A listener on `addr` with an accept queue of [`BACKLOG`], non-blocking
/// (address reuse on, as std and tokio bind).
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// [`bind_std`] as a tokio listener (call inside the runtime).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time a client has to send a request head (and finish the TLS
    /// handshake) before its connection is closed.
    pub header_timeout: Duration,
    /// A connection with no open request for this long is closed.
    pub idle_timeout: Duration,
    /// How long shutdown waits for open requests to finish.
    pub drain: Duration,
    /// Serve HTTPS (ALPN `h2`, `http/1.1`) with this certificate.
    pub tls: Option<Arc<ReloadingCert>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            drain: DEFAULT_DRAIN,
            tls: None,
        }
    }
}

impl ServeOptions {
    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Marks a request that arrived over TLS (a request extension set by
/// [`serve_with`]; the wasi:http request then reports scheme `https`).
pub use gust_runtime::Https;

/// Serves `listener` with `handler` (called with each request and the
/// client's address) until `shutdown` resolves; then stops accepting, asks
/// every connection to close after its open requests, and waits for them
/// up to `options.drain`.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    handler: H,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = match &options.tls {
        Some(cert) => match cert.server_config() {
            Ok(config) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            Err(e) => {
                tracing::error!(error = %e, "cannot serve HTTPS");
                return;
            }
        },
        None => None,
    };
    let reloader = options
        .tls
        .clone()
        .map(|cert| tokio::spawn(watch_cert(cert)));
    // Every connection task holds a sender; the drain ends when all are gone.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let connection = Connection {
                    builder: builder.clone(),
                    acceptor: acceptor.clone(),
                    options: options.clone(),
                    stop: stop_rx.clone(),
                    _open: open_tx.clone(),
                };
                tokio::spawn(connection.run(stream, client, handler.clone()));
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(open_tx);
    let _ = stop_tx.send(true);
    if let Some(task) = reloader {
        task.abort();
    }
    tokio::select! {
        _ = open_rx.recv() => {}
        () = tokio::time::sleep(options.drain) => tracing::warn!("gave up waiting for open requests"),
    }
}

/// Checks the certificate files for changes until aborted.
async fn watch_cert(cert: Arc<ReloadingCert>) {
    loop {
        tokio::time::sleep(CERT_POLL).await;
        let c = cert.clone();
        match tokio::task::spawn_blocking(move || c.reload_if_changed()).await {
            Ok(Ok(true)) => {
                tracing::info!(cert = %cert.cert_path().display(), "reloaded the TLS certificate");
            }
            Ok(Ok(false)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "keeping the previous TLS certificate");
            }
        }
    }
}

/// One accepted connection and what it shares with the listener.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    options: ServeOptions,
    stop: tokio::sync::watch::Receiver<bool>,
    _open: tokio::sync::mpsc::Sender<()>,
}

/// What a connection's requests report to its idle watch.
struct Activity {
    /// Requests open (from their head until their response body ends).
    open: AtomicUsize,
    /// Whether any request came.
    served: AtomicBool,
    /// When a request last began or ended (or the connection was accepted).
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// When the connection counts as idle if nothing happens before:
    /// `None` while a request is open.
    fn idle_at(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<Instant> {
        if self.open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Before the first request, its head is due within the header
        // timeout (this closes silent connections).
        Some(if self.served.load(Ordering::SeqCst) {
            last + idle_timeout
        } else {
            last + header_timeout
        })
    }
}

/// Held by a request (and then its response body) while it is open.
struct Open(Arc<Activity>);

impl Open {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::SeqCst);
        activity.served.store(true, Ordering::SeqCst);
        activity.touch();
        Self(activity.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    async fn run<H, F>(self, stream: TcpStream, client: SocketAddr, handler: H)
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let _ = stream.set_nodelay(true);
        let own = stream
            .local_addr()
            .ok()
            .and_then(|a| HeaderValue::from_str(&a.to_string()).ok());
        let activity = Arc::new(Activity {
            open: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
        });
        match self.acceptor.clone() {
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.options.header_timeout, acceptor.accept(stream));
                let tls = match handshake.await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%client, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                self.serve(tls, client, handler, own, true, activity).await;
            }
            None => {
                self.serve(stream, client, handler, own, false, activity)
                    .await
            }
        }
    }

    async fn serve<I, H, F>(
        self,
        io: I,
        client: SocketAddr,
        handler: H,
        own: Option<HeaderValue>,
        https: bool,
        activity: Arc<Activity>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let requests = activity.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let open = Open::begin(&requests);
            let checked = check_host(&mut req, own.as_ref());
            if https {
                req.extensions_mut().insert(Https);
            }
            let handler = handler.clone();
            async move {
                let response = match checked {
                    Ok(()) => handler(req, client).await,
                    Err(message) => body::error(StatusCode::BAD_REQUEST, "bad-host", message),
                };
                Ok::<_, Infallible>(response.map(|b| Holding::new(b, open).boxed_unsync()))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stop = self.stop;
        let mut stopping = false;
        let header_timeout = self.options.header_timeout;
        let idle_timeout = self.options.idle_timeout;
        // Set once the connection was asked to close for idling: past this
        // instant, a connection with no open request is dropped.
        let mut closing: Option<Instant> = None;
        loop {
            let deadline = closing
                .or_else(|| activity.idle_at(header_timeout, idle_timeout))
                .unwrap_or_else(|| Instant::now() + idle_timeout);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%client, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = stop.wait_for(|stop| *stop), if !stopping => {
                    // Shutdown: finish open requests, then close (the
                    // listener bounds the wait).
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(deadline), if !stopping => {
                    let idle = activity
                        .idle_at(header_timeout, idle_timeout)
                        .is_some_and(|at| at <= Instant::now());
                    match closing {
                        // Asked to close and still nothing open: drop it.
                        Some(_) if activity.open.load(Ordering::SeqCst) == 0 => break,
                        Some(_) => closing = Some(Instant::now() + header_timeout),
                        None if idle => {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now() + header_timeout.min(idle_timeout));
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

/// Checks the request's `Host` (RFC 9112 section 3.2): exactly one, a
/// valid `host[:port]`. An HTTP/1.0 request, or an HTTP/2 request without
/// `:authority`, that has none gets `own` (the address the client
/// connected to). Returns the message for a 400 otherwise.
pub fn check_host<B>(req: &mut Request<B>, own: Option<&HeaderValue>) -> Result<(), String> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err("the request has more than one Host header; send exactly one".into());
    }
    if let Some(authority) = req.uri().authority() {
        valid_authority(authority.as_str()).map_err(|why| {
            format!("invalid authority `{authority}` in the request target: {why}")
        })?;
    }
    match first {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                "the Host header is not valid text: send host[:port] in ASCII (IDNA for international names)".to_string()
            })?;
            valid_authority(text).map_err(|why| format!("invalid Host header `{text}`: {why}"))
        }
        None if req.version() == Version::HTTP_11 => {
            Err("an HTTP/1.1 request needs a Host header (Host: host[:port])".into())
        }
        None if req.uri().authority().is_some() => Ok(()),
        None => {
            if let Some(own) = own {
                req.headers_mut().insert(header::HOST, own.clone());
                Ok(())
            } else {
                Err("the request names no host; send a Host header".into())
            }
        }
    }
}

/// Whether `text` is `host[:port]`: a registered name or IPv4 address, or
/// an IPv6 address in brackets, then an optional port from 0 to 65535.
fn valid_authority(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    if text.contains('@') {
        return Err("it must not hold user information (`user@`)");
    }
    if text.parse::<http::uri::Authority>().is_err() {
        return Err("it is not host[:port]");
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return Err("an IPv6 address needs its closing `]`");
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the address in brackets is not an IPv6 address");
        }
        match after {
            "" => (ip, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return Err("only `:port` may follow the IPv6 address"),
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err("the port must be a number from 0 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, hosts: &[&[u8]]) -> Request<()> {
        let mut r = Request::builder().version(version).uri("/x");
        for h in hosts {
            r = r.header(header::HOST, HeaderValue::from_bytes(h).unwrap());
        }
        r.body(()).unwrap()
    }

    #[test]
    fn valid_hosts_pass() {
        for h in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:7070",
            "[::1]",
            "[::1]:443",
            "a-b.c_d",
        ] {
            let mut r = req(Version::HTTP_11, &[h.as_bytes()]);
            assert_eq!(check_host(&mut r, None), Ok(()), "{h}");
        }
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for h in [
            &b"a b"[..],
            b"[::1",
            b"x:99999",
            b"x:",
            b":80",
            b"",
            b"u@h",
            b"x:8a",
            b"[nope]:1",
            b"caf\xc3\xa9",
            b"\xff",
        ] {
            let mut r = req(Version::HTTP_11, &[h]);
            let e = check_host(&mut r, None).unwrap_err();
            assert!(e.contains("Host"), "{e}");
        }
    }

    #[test]
    fn one_host_is_required_on_http_1_1() {
        let mut r = req(Version::HTTP_11, &[]);
        assert!(
            check_host(&mut r, None)
                .unwrap_err()
                .contains("needs a Host")
        );
        let mut r = req(Version::HTTP_11, &[b"a", b"a"]);
        assert!(
            check_host(&mut r, None)
                .unwrap_err()
                .contains("more than one")
        );
    }

    #[test]
    fn http_1_0_without_host_gets_the_listener_address() {
        let own = HeaderValue::from_static("127.0.0.1:7070");
        let mut r = req(Version::HTTP_10, &[]);
        assert_eq!(check_host(&mut r, Some(&own)), Ok(()));
        assert_eq!(r.headers()[header::HOST], own);
        let mut r = req(Version::HTTP_10, &[b"a b"]);
        assert!(check_host(&mut r, Some(&own)).is_err());
    }

    /// An HTTP/2 connection that served a request and then idles is
    /// closed (GOAWAY), and shutdown returns once nothing is open.
    #[tokio::test]
    async fn idle_http2_connections_are_closed_and_shutdown_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            drain: Duration::from_secs(20),
            tls: None,
        };
        let handler = |req: Request<Incoming>, _client| async move {
            let host = req.uri().authority().map(|a| a.to_string());
            body::json(StatusCode::OK, &serde_json::json!({ "host": host }))
        };
        let server = tokio::spawn(serve_with(listener, handler, options, async {
            let _ = stopped.await;
        }));
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}/x"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&text).contains(&addr.to_string()));
        // Idle: the server ends the connection (bounded wait).
        let ended = tokio::time::timeout(Duration::from_secs(15), conn).await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
        let _ = stop.send(());
        let done = tokio::time::timeout(Duration::from_secs(15), server).await;
        assert!(done.is_ok(), "shutdown did not return");
    }

    #[test]
    fn http_2_uses_its_authority() {
        let mut r = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://example.com:8443/x")
            .body(())
            .unwrap();
        assert_eq!(check_host(&mut r, None), Ok(()));
        let mut r = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://example.com:99999/x")
            .body(())
            .unwrap();
        assert!(check_host(&mut r, None).unwrap_err().contains("authority"));
    }
}
