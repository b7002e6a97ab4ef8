//! Shared by the conformance suites: a NATS server with JetStream at
//! 127.0.0.1:4222 and a unique stream prefix per case, cleaned up after.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use gust_backends::nats::NatsQueues;

/// The server the tests use (JetStream enabled).
pub const URL: &str = "nats://127.0.0.1:4222";

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}x{}x{n}", std::process::id(), nanos % 1_000_000_000)
}

/// Runs `case` on a fresh prefix (given to it too, to connect again), then
/// deletes that prefix's streams, also when the case panicked.
pub async fn run<F, Fut>(f: F)
where
    F: FnOnce(Arc<NatsQueues>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let prefix = unique_prefix();
    let provider = NatsQueues::connect(URL, &prefix)
        .await
        .expect("NATS with JetStream must run at 127.0.0.1:4222");
    let result = tokio::spawn(f(Arc::new(provider), prefix.clone())).await;
    delete_streams(&prefix).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Deletes every stream whose name starts with `<PREFIX>_`.
pub async fn delete_streams(prefix: &str) {
    let client = async_nats::connect(URL).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let start = format!("{}_", prefix.to_uppercase());
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    for name in names.into_iter().filter(|n| n.starts_with(&start)) {
        js.delete_stream(&name).await.unwrap();
    }
}
