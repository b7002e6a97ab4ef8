//! The blob trigger: a blob that appears or changes in a container (written
//! by a function, copied into an embedded container's folder with `cp`, or
//! uploaded to S3) runs the function once per version.
//!
//! The watcher works through [`BlobContainer`] only: it pages through
//! [`BlobContainer::list_versions`] (from the pattern's literal head, e.g.
//! `incoming/` for `incoming/{name}.csv`), and sleeps in
//! [`BlobContainer::wait_for_change`] between scans (woken by the engine's
//! change notifications where it has them, else once a second). Receipts
//! (done, failures so far, poisoned) are kept in a key-value store under
//! `<function>|<blob name>`, so they survive restarts. A blob the engine
//! does not report [complete](gust_backends::BlobInfo::complete) (an embedded
//! file still being copied) is left for a later scan. After `max_attempts`
//! failures, or a non-retryable one, or when the blob is larger than
//! `max_size`, a version is poisoned: logged and never retried.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gust_backends::{BlobContainer, BlobInfo, KeyValue, Queue};
use gust_events::{Event, Outcome};
use gust_manifest::{BlobPattern, EventTriggerKind, Function, RetryPolicy, Trigger};
use serde::Deserialize;
use serde_json::json;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings, check_resource_name};
use crate::settle::{Settlement, dead_letter_event, settle};

/// `trigger = { blob = { container = "uploads", path = "incoming/{name}.csv" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettings {
    /// The container, on whichever engine serves the app's blobs.
    #[serde(default)]
    pub container: String,
    /// Path pattern inside the container; `{param}` matches one path segment
    /// part and is bound into the event (default `{*path}`: every blob).
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "{*path}".into()
}

impl BlobSettings {
    /// Blobs of `container` whose names match `path`.
    pub fn new(container: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            container: container.into(),
            path: path.into(),
        }
    }
}

impl Settings for BlobSettings {
    const KIND: &'static str = "blob";
    const HELP: &'static str =
        "blob triggers take `container = \"uploads\"` and `path = \"incoming/{name}.csv\"`";

    fn check(&self) -> Result<(), Invalid> {
        check_resource_name("container", "blob", &self.container)?;
        BlobPattern::parse(&self.path)
            .map(|_| ())
            .map_err(|why| Invalid::new("path", why.to_string()))
    }
}

/// Full rescan period (catches anything a watch missed, runs retries, and
/// is the poll interval of engines that cannot watch).
const RESCAN: Duration = Duration::from_secs(1);
/// How soon to look again at a blob that was not complete yet.
const SOON: Duration = Duration::from_millis(300);
/// Blobs listed per request.
const PAGE: usize = 500;

/// Watches one container for one function.
#[derive(Clone)]
pub struct BlobWatcher {
    /// The function.
    pub function: String,
    /// Its trigger settings (`container` names the event source; the blobs
    /// come from [`Self::container`]).
    pub trigger: BlobSettings,
    /// The container watched.
    pub container: Arc<dyn BlobContainer>,
    /// Retry policy (its `max_attempts` poisons a version).
    pub retry: RetryPolicy,
    /// Receipts, keyed by function and blob name.
    pub receipts: Arc<dyn KeyValue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Largest blob handed to a function.
    pub max_size: u64,
    /// The queue `<container>--<function>` whose dead letters take the
    /// events of versions the function gave up on
    /// ([`crate::settle::retry_queue`]).
    pub dead_letters: Arc<dyn Queue>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Receipt {
    version: String,
    status: String,
    failures: u32,
    retry_at_ms: u64,
    reason: String,
}

/// The literal text every name matching `pattern` starts with.
fn literal_head(pattern: &str) -> &str {
    &pattern[..pattern.find('{').unwrap_or(pattern.len())]
}

impl BlobWatcher {
    /// Scans and watches until `shutdown`.
    pub async fn run(self, mut shutdown: Shutdown) {
        let pattern = match BlobPattern::parse(&self.trigger.path) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(function = %self.function, error = %e, "blob trigger not started");
                return;
            }
        };
        // Start the engine's watch before the first scan, so nothing
        // written during the scan goes unnoticed.
        self.container.wait_for_change(Duration::ZERO).await;
        loop {
            // A scan runs to its end: a function it started finishes.
            let again_soon = self.scan(&pattern).await;
            let wait = if again_soon { SOON } else { RESCAN };
            tokio::select! {
                _ = self.container.wait_for_change(wait) => {}
                () = shutdown.requested() => break,
            }
        }
    }

    /// Looks at every matching blob once; `true` if one should be looked
    /// at again soon (it was not complete, or changed while being read).
    async fn scan(&self, pattern: &BlobPattern) -> bool {
        let prefix = literal_head(&self.trigger.path);
        let mut again_soon = false;
        let mut after: Option<String> = None;
        loop {
            let page = match self
                .container
                .list_versions(prefix, after.as_deref(), PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(function = %self.function, error = %e, "cannot list the blob container");
                    return false;
                }
            };
            for info in &page {
                if let Some(params) = pattern.matches(&info.name) {
                    again_soon |= self.consider(info, params).await;
                }
            }
            if page.len() < PAGE {
                return again_soon;
            }
            after = page.last().map(|i| i.name.clone());
        }
    }

    /// Runs the function on this version of the blob unless its receipt
    /// says not to; `true` if the blob should be looked at again soon.
    async fn consider(&self, info: &BlobInfo, params: Vec<(String, String)>) -> bool {
        if !info.complete {
            return true; // still being written; a scan soon takes it
        }
        let key = format!("{}|{}", self.function, info.name);
        let mut receipt = self.load(&key).await;
        if receipt.version != info.version {
            receipt = Receipt {
                version: info.version.clone(),
                ..Receipt::default()
            };
        }
        if matches!(receipt.status.as_str(), "done" | "poisoned") || now_ms() < receipt.retry_at_ms
        {
            return false;
        }
        if info.size > self.max_size {
            let reason = format!(
                "blob is {} bytes; the limit is {}",
                info.size, self.max_size
            );
            let mut event = self.event(info, &receipt, Vec::new(), params);
            event.set_extension("size", info.size.to_string());
            self.give_up(&key, receipt, &event, reason).await;
            return false;
        }
        let data = match self.container.get_with_info(&info.name).await {
            Ok(Some((read, data))) if read.version == info.version => data,
            // Replaced (or deleted) since the listing: the next scan sees
            // what is there now.
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(function = %self.function, blob = %info.name, error = %e, "cannot read the blob");
                return false;
            }
        };
        let event = self.event(info, &receipt, data, params);
        let outcome = self
            .dispatcher
            .dispatch(&self.function, event.clone())
            .await;
        // The shared retry / give-up decision; giving up poisons the version
        // and dead-letters its event.
        match settle(&outcome, receipt.failures + 1, &self.retry) {
            Settlement::Ack => {
                receipt.status = "done".into();
                self.save(&key, &receipt).await;
            }
            Settlement::Retry(delay) => {
                receipt.failures += 1;
                receipt.status = "retry".into();
                if let Outcome::Retry(why) = outcome {
                    receipt.reason = why;
                }
                receipt.retry_at_ms = now_ms() + delay.as_millis() as u64;
                self.save(&key, &receipt).await;
            }
            Settlement::DeadLetter(reason) => {
                receipt.failures += 1;
                self.give_up(&key, receipt, &event, reason).await;
            }
        }
        false
    }

    /// The event of this version of a blob.
    fn event(
        &self,
        info: &BlobInfo,
        receipt: &Receipt,
        data: Vec<u8>,
        params: Vec<(String, String)>,
    ) -> Event {
        let mut event = Event::new(
            format!("/gust/blob/{}", self.trigger.container),
            "gust.blob.created",
            data,
        );
        event.id = format!("{}@{}", info.name, receipt.version);
        event.subject = Some(info.name.clone());
        event.attempt = receipt.failures + 1;
        for (name, value) in params {
            event.set_extension(&name, value);
        }
        event
    }

    /// Poisons the version (it never runs again by itself) and dead-letters
    /// its event, so it can be listed and redriven like any dead letter.
    async fn give_up(&self, key: &str, mut receipt: Receipt, event: &Event, reason: String) {
        tracing::warn!(function = %self.function, blob = %key, "blob poisoned: {reason}");
        dead_letter_event(&*self.dead_letters, event, &reason, receipt.failures.max(1)).await;
        receipt.status = "poisoned".into();
        receipt.reason = reason;
        self.save(key, &receipt).await;
    }

    async fn load(&self, key: &str) -> Receipt {
        let Ok(Some(bytes)) = self.receipts.get(key).await else {
            return Receipt::default();
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Receipt {
            version: v["version"].as_str().unwrap_or_default().to_string(),
            status: v["status"].as_str().unwrap_or_default().to_string(),
            failures: v["failures"].as_u64().unwrap_or(0) as u32,
            retry_at_ms: v["retry_at_ms"].as_u64().unwrap_or(0),
            reason: v["reason"].as_str().unwrap_or_default().to_string(),
        }
    }

    async fn save(&self, key: &str, r: &Receipt) {
        let value = json!({
            "version": r.version, "status": r.status, "failures": r.failures,
            "retry_at_ms": r.retry_at_ms, "reason": r.reason,
        });
        if let Err(e) = self.receipts.set(key, value.to_string().into_bytes()).await {
            tracing::warn!(error = %e, "cannot persist a blob receipt");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The internal kv store holding blob trigger receipts.
pub const RECEIPT_STORE: &str = "gust:blob-receipts";

/// The `blob` trigger kind: blobs of a container on any blob engine.
pub struct BlobKind;

impl TriggerKind for BlobKind {
    fn name(&self) -> &'static str {
        "blob"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Blob,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        BlobSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        let Ok(b) = BlobSettings::of(function) else {
            return Description::other(self.name(), function);
        };
        Description {
            kind: "blob",
            source: format!("blobs matching `{}` in container `{}`", b.path, b.container),
            details: json!({
                "kind": "blob",
                "container": b.container,
                "path": b.path,
                "deadletter_queue": crate::settle::retry_queue(&b.container, &function.name),
            }),
        }
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let blob = &BlobSettings::of(cx.function)?;
            let f = cx.function;
            let container = cx.services.blobs.container(&blob.container).map_err(|e| {
                cx.error(format!(
                    "cannot open blob container `{}`: {e}",
                    blob.container
                ))
            })?;
            let receipts = cx
                .services
                .kv
                .open(RECEIPT_STORE)
                .map_err(|e| cx.error(format!("cannot open the blob receipt store: {e}")))?;
            let dead_letters = cx
                .queue(&crate::settle::retry_queue(&blob.container, &f.name))
                .await?;
            let mut started = Started::default();
            cx.start_redrive(&mut started, dead_letters.clone());
            let watcher = BlobWatcher {
                function: f.name.clone(),
                trigger: blob.clone(),
                container,
                retry: f.retry.clone(),
                receipts,
                dispatcher: cx.dispatcher.clone(),
                max_size: f.limits.max_body,
                dead_letters,
            };
            let claim = format!("blob:{}:{}", blob.container, f.name);
            cx.spawn_owned(&mut started, vec![claim], move |_, shutdown| {
                watcher.clone().run(shutdown)
            });
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    /// A dead-letter queue for `load`, in a store that lives as long as the
    /// test process.
    fn test_dead_letters() -> std::sync::Arc<dyn gust_backends::Queue> {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let queues =
            gust_backends::embedded::EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
        std::sync::Arc::new(queues.open_queue("uploads--load").unwrap())
    }

    use gust_backends::embedded::{EmbeddedBlobs, EmbeddedKv};
    use gust_backends::{BlobProvider, KeyValueProvider};
    use gust_manifest::RetryStrategy;

    use super::*;
    use crate::test_support::Recorder;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_each_version_once_binds_params_and_poisons() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("uploads");
        std::fs::create_dir_all(root.join("incoming")).unwrap();
        std::fs::write(root.join("incoming/jan.csv"), "a,b").unwrap();
        std::fs::write(root.join("incoming/skip.txt"), "x").unwrap();
        std::fs::write(root.join("incoming/bad.csv"), "bad").unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let recorder = Arc::new(Recorder::new(|e| {
            if e.data == b"bad" {
                Outcome::Retry("bad data".into())
            } else {
                Outcome::Done
            }
        }));
        let container = EmbeddedBlobs::new(dir.path()).container("uploads").unwrap();
        let dead_letters = test_dead_letters();
        let watcher = || BlobWatcher {
            function: "load".into(),
            trigger: BlobSettings::new("uploads", "incoming/{name}.csv"),
            container: container.clone(),
            retry: RetryPolicy {
                strategy: RetryStrategy::Fixed,
                max_attempts: 2,
                min: Duration::from_millis(10),
                max: Duration::from_millis(10),
            },
            receipts: kv.open("receipts").unwrap(),
            dispatcher: recorder.clone(),
            max_size: 1 << 20,
            dead_letters: dead_letters.clone(),
        };
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(watcher().run(shutdown));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        {
            let seen = recorder.seen();
            let jan: Vec<_> = seen.iter().filter(|e| e.data == b"a,b").collect();
            assert_eq!(jan.len(), 1);
            assert_eq!(jan[0].extension("name"), Some("jan"));
            assert_eq!(jan[0].subject.as_deref(), Some("incoming/jan.csv"));
            assert_eq!(
                seen.iter().filter(|e| e.data == b"bad").count(),
                2,
                "retried once, then poisoned"
            );
            assert!(!seen.iter().any(|e| e.data == b"x"));
            // The poisoned version's event is a dead letter of `uploads--load`.
            let dead = dead_letters.dead_letters(10).await.unwrap();
            assert_eq!(dead.len(), 1, "{dead:?}");
            assert_eq!(dead[0].message.body, b"bad");
            assert_eq!(dead[0].attempts, 2);
        }
        // A restart processes nothing again; a new version is processed.
        std::fs::write(root.join("incoming/jan.csv"), "a,b,c").unwrap();
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(watcher().run(shutdown));
        tokio::time::sleep(Duration::from_millis(2000)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let seen = recorder.seen();
        assert_eq!(seen.iter().filter(|e| e.data == b"a,b").count(), 1);
        assert_eq!(seen.iter().filter(|e| e.data == b"a,b,c").count(), 1);
        assert_eq!(seen.iter().filter(|e| e.data == b"bad").count(), 2);
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            strategy: RetryStrategy::Fixed,
            max_attempts,
            min: Duration::from_millis(10),
            max: Duration::from_millis(10),
        }
    }

    #[test]
    fn lists_from_the_literal_head_of_the_pattern() {
        assert_eq!(literal_head("incoming/{name}.csv"), "incoming/");
        assert_eq!(literal_head("{*path}"), "");
        assert_eq!(literal_head("a.csv"), "a.csv");
    }

    /// Waits (bounded) until `done` holds for what the recorder saw.
    async fn until(recorder: &Recorder, done: impl Fn(&[Event]) -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done(&recorder.seen()) && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The same trigger on an S3 container (moto at 127.0.0.1:9000, see
    /// `scripts/setup.sh --services`), in a bucket of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_from_an_s3_container() {
        let bucket = s3_support::Bucket::create().await;
        let blobs = gust_backends::s3::S3Blobs::connect(&bucket.url(), "app")
            .await
            .unwrap();
        let container = blobs.container("uploads").unwrap();
        container
            .put("incoming/jan.csv", b"a,b".to_vec())
            .await
            .unwrap();
        container
            .put("incoming/skip.txt", b"x".to_vec())
            .await
            .unwrap();
        container
            .put("incoming/bad.csv", b"bad".to_vec())
            .await
            .unwrap();
        container
            .put("incoming/big.csv", vec![b'x'; 2048])
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let recorder = Arc::new(Recorder::new(|e| {
            if e.data == b"bad" {
                Outcome::Retry("bad data".into())
            } else {
                Outcome::Done
            }
        }));
        let dead_letters = test_dead_letters();
        let watcher = || BlobWatcher {
            function: "load".into(),
            trigger: BlobSettings::new("uploads", "incoming/{name}.csv"),
            container: container.clone(),
            retry: policy(2),
            receipts: kv.open("receipts").unwrap(),
            dispatcher: recorder.clone(),
            max_size: 1024,
            dead_letters: dead_letters.clone(),
        };
        let count = |seen: &[Event], data: &[u8]| seen.iter().filter(|e| e.data == data).count();
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(watcher().run(shutdown));
        until(&recorder, |seen| {
            count(seen, b"a,b") == 1 && count(seen, b"bad") == 2
        })
        .await;
        stop.send(true).unwrap();
        task.await.unwrap();
        {
            let seen = recorder.seen();
            let jan: Vec<_> = seen.iter().filter(|e| e.data == b"a,b").collect();
            assert_eq!(jan.len(), 1);
            assert_eq!(jan[0].extension("name"), Some("jan"));
            assert_eq!(jan[0].subject.as_deref(), Some("incoming/jan.csv"));
            assert_eq!(jan[0].source, "/gust/blob/uploads");
            assert_eq!(count(&seen, b"bad"), 2, "retried once, then poisoned");
            assert_eq!(count(&seen, b"x"), 0, "not matched");
            assert!(
                !seen.iter().any(|e| e.data.len() == 2048),
                "larger than max_size"
            );
        }
        // A restart processes nothing again; a new version is processed.
        container
            .put("incoming/jan.csv", b"a,b,c".to_vec())
            .await
            .unwrap();
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(watcher().run(shutdown));
        until(&recorder, |seen| count(seen, b"a,b,c") == 1).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let seen = recorder.seen();
        assert_eq!(count(&seen, b"a,b"), 1);
        assert_eq!(count(&seen, b"a,b,c"), 1);
        assert_eq!(count(&seen, b"bad"), 2);
        bucket.delete().await;
    }
}

/// A bucket of its own on the local S3 test server, for one test.
#[cfg(test)]
mod s3_support {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The test server's address (moto, started by `scripts/setup.sh --services`).
    const ADDR: &str = "127.0.0.1:9000";

    /// A bucket made for one test.
    pub struct Bucket(String);

    /// Sends one unsigned request (moto does not check signatures) and
    /// returns the status line.
    async fn request(method: &str, path: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(ADDR)
            .await
            .expect("an S3 server must run at 127.0.0.1:9000 (scripts/setup.sh --services)");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {ADDR}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_string()
    }

    impl Bucket {
        /// Creates a bucket with a unique name.
        pub async fn create() -> Self {
            let mut suffix = [0u8; 6];
            getrandom::fill(&mut suffix).unwrap();
            let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
            let name = format!("gust-trigger-{hex}");
            let status = request("PUT", &format!("/{name}")).await;
            assert!(status.contains(" 200"), "creating bucket {name}: {status}");
            Self(name)
        }

        /// The `s3://` URL of the bucket.
        pub fn url(&self) -> String {
            format!(
                "s3://{}?endpoint=http://{ADDR}&region=us-east-1&access_key_id=test&secret_access_key=test",
                self.0
            )
        }

        /// Deletes every object, then the bucket.
        pub async fn delete(self) {
            use gust_backends::BlobProvider;
            let blobs = gust_backends::s3::S3Blobs::connect(&self.url(), "app")
                .await
                .unwrap();
            let c = blobs.container("uploads").unwrap();
            for name in c.list("", 10_000).await.unwrap() {
                c.delete(&name).await.unwrap();
            }
            request("DELETE", &format!("/{}", self.0)).await;
        }
    }
}
