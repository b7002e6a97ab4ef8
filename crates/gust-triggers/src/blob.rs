//! The blob trigger on the embedded backend: a container is a folder, and a
//! file that appears or changes there (written by a function, or copied in
//! with `cp`) runs the function once per version.
//!
//! A version is the file's size and modification time. Receipts (done,
//! failures so far, poisoned) are kept in a key-value store, so they survive
//! restarts; a file is picked up once it has been quiet for a moment, so a
//! half-copied file is not processed. After `max_attempts` failures a version
//! is poisoned: logged and never retried.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gust_backends::KeyValue;
use gust_events::{Event, Outcome};
use gust_manifest::{BlobPattern, BlobTrigger, RetryPolicy};
use notify::Watcher;
use serde_json::json;
use tokio::sync::mpsc;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::retry::backoff;

/// How long a file must be unchanged before it is processed.
const QUIET: Duration = Duration::from_millis(300);
/// Full rescan period (catches anything the watcher missed, and retries).
const RESCAN: Duration = Duration::from_secs(1);

/// Watches one container for one function.
pub struct BlobWatcher {
    /// The function.
    pub function: String,
    /// Its trigger settings.
    pub trigger: BlobTrigger,
    /// The container's folder.
    pub root: PathBuf,
    /// Retry policy (its `max_attempts` poisons a version).
    pub retry: RetryPolicy,
    /// Receipts, keyed by function and path.
    pub receipts: Arc<dyn KeyValue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Largest blob handed to a function.
    pub max_size: u64,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Receipt {
    version: String,
    status: String,
    failures: u32,
    retry_at_ms: u64,
    reason: String,
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
        if let Err(e) = std::fs::create_dir_all(&self.root) {
            tracing::error!(function = %self.function, error = %e, "cannot create the container folder");
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| {
            w.watch(&self.root, notify::RecursiveMode::Recursive)
                .map(|()| w)
        });
        if let Err(e) = &watcher {
            tracing::warn!(error = %e, "cannot watch the container; rescanning every second only");
        }
        loop {
            self.scan(&pattern).await;
            tokio::select! {
                _ = rx.recv() => tokio::time::sleep(QUIET).await,
                () = tokio::time::sleep(RESCAN) => {}
                () = shutdown.requested() => break,
            }
            while rx.try_recv().is_ok() {}
        }
        drop(watcher);
    }

    async fn scan(&self, pattern: &BlobPattern) {
        let mut files = Vec::new();
        collect_files(&self.root, &mut files);
        files.sort();
        for path in files {
            let Some(rel) = relative(&self.root, &path) else {
                continue;
            };
            if let Some(params) = pattern.matches(&rel) {
                self.consider(&path, &rel, params).await;
            }
        }
    }

    async fn consider(&self, path: &Path, rel: &str, params: Vec<(String, String)>) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        if SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default()
            < QUIET
        {
            return; // still being written; the next scan takes it
        }
        let version = format!(
            "{}-{}",
            meta.len(),
            modified
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let key = format!("{}|{rel}", self.function);
        let mut receipt = self.load(&key).await;
        if receipt.version != version {
            receipt = Receipt {
                version,
                ..Receipt::default()
            };
        }
        if matches!(receipt.status.as_str(), "done" | "poisoned") || now_ms() < receipt.retry_at_ms
        {
            return;
        }
        if meta.len() > self.max_size {
            self.poison(
                &key,
                receipt,
                format!(
                    "blob is {} bytes; the limit is {}",
                    meta.len(),
                    self.max_size
                ),
            )
            .await;
            return;
        }
        let Ok(data) = std::fs::read(path) else {
            return;
        };
        let mut event = Event::new(
            format!("/gust/blob/{}", self.trigger.container),
            "gust.blob.created",
            data,
        );
        event.id = format!("{}@{}", rel, receipt.version);
        event.subject = Some(rel.to_string());
        event.attempt = receipt.failures + 1;
        for (name, value) in params {
            event.set_extension(&name, value);
        }
        match self.dispatcher.dispatch(&self.function, event).await {
            Outcome::Done => {
                receipt.status = "done".into();
                self.save(&key, &receipt).await;
            }
            Outcome::Retry(why) if receipt.failures + 1 < self.retry.max_attempts => {
                receipt.failures += 1;
                receipt.status = "retry".into();
                receipt.reason = why;
                receipt.retry_at_ms =
                    now_ms() + backoff(&self.retry, receipt.failures).as_millis() as u64;
                self.save(&key, &receipt).await;
            }
            Outcome::Retry(why) => {
                receipt.failures += 1;
                self.poison(
                    &key,
                    receipt,
                    format!("gave up after {} attempts: {why}", self.retry.max_attempts),
                )
                .await;
            }
            Outcome::Fail(why) => {
                receipt.failures += 1;
                self.poison(&key, receipt, format!("not retryable: {why}"))
                    .await;
            }
        }
    }

    async fn poison(&self, key: &str, mut receipt: Receipt, reason: String) {
        tracing::warn!(function = %self.function, blob = %key, "blob poisoned: {reason}");
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

/// Regular files under `dir`, skipping hidden and temporary names.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with('~') || name.ends_with(".tmp") {
            continue;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use gust_backends::KeyValueProvider;
    use gust_backends::embedded::EmbeddedKv;
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
        let watcher = || BlobWatcher {
            function: "load".into(),
            trigger: BlobTrigger {
                container: "uploads".into(),
                path: "incoming/{name}.csv".into(),
            },
            root: root.clone(),
            retry: RetryPolicy {
                strategy: RetryStrategy::Fixed,
                max_attempts: 2,
                min: Duration::from_millis(10),
                max: Duration::from_millis(10),
            },
            receipts: kv.open("receipts").unwrap(),
            dispatcher: recorder.clone(),
            max_size: 1 << 20,
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
}
