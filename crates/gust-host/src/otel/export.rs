//! The exporter: a bounded queue of spans, drained in batches by one
//! background task that POSTs them to the collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::TraceConfig;

/// Spans waiting to be sent; more are dropped (and counted).
const QUEUE: usize = 2048;
/// Most spans in one request.
const BATCH: usize = 512;
/// Longest a span waits for its batch to fill.
const DELAY: Duration = Duration::from_secs(1);
/// Longest one export request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// At most one warning about failed exports or dropped spans this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The spans of one app on this node, on their way to the collector.
pub struct TraceExporter {
    queue: mpsc::Sender<Item>,
    stats: Arc<Counters>,
}

/// What the sender task receives.
enum Item {
    /// A span to export.
    Span(Box<Span>),
    /// Send what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// What happened to the spans so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
    /// Spans lost with a failed export request.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl TraceExporter {
    /// Starts exporting the spans of app `service` on node `node` as
    /// `config` says, and makes `config`'s ratio the sampler of new traces.
    /// Must be called inside the tokio runtime (the sender is a task of it).
    pub fn start(config: &TraceConfig, service: &str, node: &str) -> Arc<Self> {
        gust_events::trace::set_root_sampler(gust_events::trace::Sampler::ratio(config.sample));
        let (queue, spans) = mpsc::channel(QUEUE);
        let stats = Arc::new(Counters::default());
        let sender = Sender {
            url: config.traces_url.clone(),
            service: service.to_string(),
            node: node.to_string(),
            client: client(),
            stats: stats.clone(),
            last_warning: None,
            reported: (0, 0),
        };
        tokio::spawn(sender.run(spans));
        Arc::new(Self { queue, stats })
    }

    /// Queues `span` for export without waiting; drops it (counted) when
    /// the queue is full.
    pub fn push(&self, span: Span) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.queue.try_send(Item::Span(Box::new(span)))
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends every span queued so far, waiting at most `timeout` (for a
    /// stop: spans still queued when the process ends would be lost).
    /// Answers whether the queue was sent in time.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, sent) = oneshot::channel();
        let flushed = async {
            self.queue.send(Item::Flush(done)).await.ok()?;
            sent.await.ok()
        };
        matches!(tokio::time::timeout(timeout, flushed).await, Ok(Some(())))
    }

    /// What happened to the spans so far.
    pub fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.stats.exported.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }
}

/// The client for `http://` and `https://` collectors (system roots).
fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(false);
    let roots = rustls_native_certs::load_native_certs().certs;
    let mut store = rustls::RootCertStore::empty();
    let _ = store.add_parsable_certificates(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(store)
        .with_no_client_auth();
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
    let https = builder
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(https)
}

/// The background task that batches and sends.
struct Sender {
    url: String,
    service: String,
    node: String,
    client: HttpClient,
    stats: Arc<Counters>,
    last_warning: Option<Instant>,
    /// Dropped and failed counts at the last warning.
    reported: (u64, u64),
}

impl Sender {
    async fn run(mut self, mut items: mpsc::Receiver<Item>) {
        let mut batch = Vec::with_capacity(BATCH);
        // Until every tracer (and so the exporter) is gone.
        while let Some(first) = items.recv().await {
            let mut flushed = Vec::new();
            match first {
                Item::Span(span) => batch.push(*span),
                Item::Flush(done) => flushed.push(done),
            }
            let deadline = tokio::time::Instant::now() + DELAY;
            while batch.len() < BATCH && flushed.is_empty() {
                match tokio::time::timeout_at(deadline, items.recv()).await {
                    Ok(Some(Item::Span(span))) => batch.push(*span),
                    Ok(Some(Item::Flush(done))) => flushed.push(done),
                    Ok(None) | Err(_) => break,
                }
            }
            if !batch.is_empty() {
                let sent = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                self.send(sent).await;
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    async fn send(&mut self, spans: Vec<Span>) {
        let count = spans.len() as u64;
        let body = super::encode::request(&self.service, &self.node, spans).encode_to_vec();
        let result = tokio::time::timeout(TIMEOUT, self.post(body)).await;
        let problem = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!("no answer within {TIMEOUT:?}")),
        };
        match problem {
            None => {
                self.stats.exported.fetch_add(count, Ordering::Relaxed);
            }
            Some(problem) => {
                self.stats.failed.fetch_add(count, Ordering::Relaxed);
                self.warn(&problem);
            }
        }
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        if dropped > self.reported.0 {
            self.warn("the span queue was full");
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let status = response.status();
        // Read the answer so the connection can be reused.
        let answer = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            Err(format!("the collector answered {status} {text}"))
        }
    }

    /// Warns about `problem`, at most once per [`WARN_EVERY`], with the
    /// spans lost since the last warning.
    fn warn(&mut self, problem: &str) {
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        let failed = self.stats.failed.load(Ordering::Relaxed);
        tracing::warn!(
            "trace export to {}: {problem}; since the last warning {} spans were lost in failed exports and {} dropped from a full queue (next warning in {}s at the earliest)",
            self.url,
            failed - self.reported.1,
            dropped - self.reported.0,
            WARN_EVERY.as_secs()
        );
        self.reported = (dropped, failed);
    }
}
