//! Key-value stores, leases and dedupe on NATS JetStream key-value buckets.
//!
//! How names map (`<ns>`, `<bucket>` and keys escaped like queue names:
//! ASCII letters, digits and `-` stay, every other byte becomes `_` and two
//! hex digits; the empty key is `_`):
//!
//! - kv store `<bucket>` of namespace `<ns>`: the bucket
//!   `gust_kv_<ns>__<bucket>` (file storage, history 1);
//! - leases: the bucket `gust_lease_<ns>`, each lease a key whose value is
//!   `holder\nexpires-at-ms` ([`KvLeases`] over a [`NatsKv`] store);
//! - dedupe: the bucket `gust_dedupe_<ns>` with `max_age` = the window, each
//!   key's [`key_digest_hex`] a key.
//!
//! Atomics are revision checks on the server: `increment` and
//! `compare_and_swap` read the key's latest revision and write with
//! "expected last revision" (`update`, or `create` for an absent key),
//! reading again when another writer got in between. NATS 2.9 has no
//! per-key ttl, so a lease's expiry is in its value (on the claimer's
//! clock), and dedupe keys expire by the bucket's `max_age`.
//!
//! Differences from the embedded backend, all from the engine:
//!
//! - `set_many` and `delete_many` are one write per key, sent together: not
//!   atomic (JetStream 2.9 has no multi-subject transaction); a failure
//!   part-way leaves the keys before it written.
//! - `list_keys` reads every key of the bucket (an ordered consumer over
//!   the latest entry per key) and sorts them, for each page.
//! - An escaped key is a subject token, so a key of more than about 4 KB
//!   is refused by the server; a value may be at most the server's
//!   `max_payload` (1 MB by default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, Entry, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::OnceCell;

use super::{escape, unescape};
use crate::dedupe::{Dedupe, key_digest_hex};
use crate::{BackendError, KeyPage, KeyValue, KeyValueProvider, KvLeases, Lease, Result};

const BACKEND: &str = "nats kv";

fn engine(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, format!("{what}: {e}"))
}

/// `key` as a NATS key.
fn key_name(key: &str) -> String {
    if key.is_empty() {
        "_".to_string()
    } else {
        escape(key)
    }
}

/// Reverses [`key_name`].
fn key_from_name(name: &str) -> Option<String> {
    if name == "_" {
        Some(String::new())
    } else {
        unescape(name)
    }
}

/// Connects to `url` and checks JetStream answers.
async fn jetstream(url: &str) -> Result<jetstream::Context> {
    let client = async_nats::connect(url).await.map_err(|e| {
        engine(
            &format!("cannot connect to {}", crate::services::redact(url)),
            e,
        )
    })?;
    Ok(jetstream::new(client))
}

/// Key-value stores of one namespace on NATS JetStream: a
/// [`KeyValueProvider`]. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct NatsKv {
    js: jetstream::Context,
    namespace: String,
    /// Stores opened so far, so each bucket is set up once per provider.
    stores: Arc<Mutex<HashMap<String, Arc<NatsStore>>>>,
}

impl std::fmt::Debug for NatsKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsKv")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl NatsKv {
    /// Connects to `url` (`nats://127.0.0.1:4222`, JetStream enabled);
    /// buckets are created on first use, kept apart per `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Ok(Self::with_context(jetstream(url).await?, namespace))
    }

    /// Like [`NatsKv::connect`], on an existing JetStream context.
    pub fn with_context(js: jetstream::Context, namespace: &str) -> Self {
        Self {
            js,
            namespace: namespace.to_string(),
            stores: Arc::default(),
        }
    }

    /// The JetStream bucket holding store `name`.
    pub fn bucket_name(&self, name: &str) -> String {
        format!("gust_kv_{}__{}", escape(&self.namespace), escape(name))
    }

    /// Store `name` itself (what [`KeyValueProvider::open`] returns, typed).
    pub fn store(&self, name: &str) -> Arc<NatsStore> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(NatsStore::new(
                    self.js.clone(),
                    self.bucket_name(name),
                    None,
                ))
            })
            .clone()
    }
}

impl KeyValueProvider for NatsKv {
    fn open(&self, name: &str) -> Result<Arc<dyn KeyValue>> {
        Ok(self.store(name))
    }
}

/// Deletes every kv, lease and dedupe bucket of `namespace` on the server
/// at `url`; returns how many.
pub async fn delete_namespace(url: &str, namespace: &str) -> Result<usize> {
    let js = jetstream(url).await?;
    let ns = escape(namespace);
    let kv_prefix = format!("KV_gust_kv_{ns}__");
    let own = [
        format!("KV_gust_lease_{ns}"),
        format!("KV_gust_dedupe_{ns}"),
    ];
    let names: Vec<String> = js
        .stream_names()
        .try_collect()
        .await
        .map_err(|e| engine("list streams", e))?;
    let mut deleted = 0;
    for name in names {
        if name.starts_with(&kv_prefix) || own.contains(&name) {
            js.delete_stream(&name)
                .await
                .map_err(|e| engine(&format!("delete stream {name}"), e))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// One JetStream key-value bucket, created on first use.
pub struct NatsStore {
    js: jetstream::Context,
    bucket: String,
    max_age: Option<Duration>,
    store: OnceCell<kv::Store>,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// What a key holds now: its value if any, and the revision to expect
/// when writing it next (0 for a key never written).
struct Current {
    value: Option<Bytes>,
    revision: u64,
}

impl NatsStore {
    fn new(js: jetstream::Context, bucket: String, max_age: Option<Duration>) -> Self {
        Self {
            js,
            bucket,
            max_age,
            store: OnceCell::new(),
        }
    }

    /// The bucket, created (or its `max_age` updated) on first use.
    ///
    /// The bucket's stream is set up here, with what
    /// `jetstream::Context::create_key_value` would ask for, since that call
    /// first reads account limits in a shape a 2.9 server does not answer.
    async fn kv(&self) -> Result<&kv::Store> {
        self.store
            .get_or_try_init(|| async {
                let failed = |e: &dyn std::fmt::Display| {
                    engine(&format!("create bucket {}", self.bucket), e)
                };
                let config = stream::Config {
                    name: format!("KV_{}", self.bucket),
                    subjects: vec![format!("$KV.{}.>", self.bucket)],
                    max_messages_per_subject: 1,
                    max_age: self.max_age.unwrap_or_default(),
                    storage: StorageType::File,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: DiscardPolicy::New,
                    num_replicas: 1,
                    ..Default::default()
                };
                self.js
                    .create_or_update_stream(config)
                    .await
                    .map_err(|e| failed(&e))?;
                self.js
                    .get_key_value(&self.bucket)
                    .await
                    .map_err(|e| failed(&e))
            })
            .await
    }

    async fn current(&self, name: &str) -> Result<Current> {
        let entry: Option<Entry> = self
            .kv()
            .await?
            .entry(name)
            .await
            .map_err(|e| engine(&format!("get {name} in {}", self.bucket), e))?;
        Ok(match entry {
            None => Current {
                value: None,
                revision: 0,
            },
            Some(e) => Current {
                value: (e.operation == Operation::Put).then_some(e.value),
                revision: e.revision,
            },
        })
    }

    /// Writes `value` if `name` is still at `revision`: `false` when
    /// another write came first.
    async fn write_at(&self, name: &str, value: Bytes, revision: u64) -> Result<bool> {
        match self.kv().await?.update(name, value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(engine(&format!("update {name} in {}", self.bucket), e)),
        }
    }
}

#[async_trait]
impl KeyValue for NatsStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .current(&key_name(key))
            .await?
            .value
            .map(|v| v.to_vec()))
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let name = key_name(key);
        self.kv()
            .await?
            .put(&name, value.into())
            .await
            .map_err(|e| engine(&format!("put {name} in {}", self.bucket), e))
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let name = key_name(key);
        self.kv()
            .await?
            .delete(&name)
            .await
            .map_err(|e| engine(&format!("delete {name} in {}", self.bucket), e))
    }

    async fn list_keys(&self, cursor: Option<u64>, page_size: usize) -> Result<KeyPage> {
        let names: Vec<String> = self
            .kv()
            .await?
            .keys()
            .await
            .map_err(|e| engine(&format!("list keys of {}", self.bucket), e))?
            .try_collect()
            .await
            .map_err(|e| engine(&format!("list keys of {}", self.bucket), e))?;
        let mut keys: Vec<String> = names.iter().filter_map(|n| key_from_name(n)).collect();
        keys.sort_unstable();
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let rest = keys.len().saturating_sub(skip);
        let page: Vec<String> = keys.into_iter().skip(skip).take(page_size).collect();
        let cursor = (rest > page.len()).then(|| (skip + page.len()) as u64);
        Ok(KeyPage { keys: page, cursor })
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        let name = key_name(key);
        loop {
            let current = self.current(&name).await?;
            let value = match &current.value {
                None => 0,
                Some(v) => parse_counter(key, v)?,
            };
            let next = value
                .checked_add(delta)
                .ok_or_else(|| BackendError::InvalidValue {
                    key: key.to_string(),
                    reason: "counter would overflow u64".into(),
                })?;
            if self
                .write_at(&name, next.to_string().into(), current.revision)
                .await?
            {
                return Ok(next);
            }
        }
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        let values = futures::future::try_join_all(keys.iter().map(|k| self.get(k))).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<()> {
        // Sequential per key, so the last of two values for one key wins.
        let mut last = HashMap::new();
        for (k, v) in pairs {
            last.insert(k, v);
        }
        futures::future::try_join_all(
            last.into_iter()
                .map(|(k, v)| async move { self.set(&k, v).await }),
        )
        .await
        .map(drop)
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        futures::future::try_join_all(keys.iter().map(|k| self.delete(k)))
            .await
            .map(drop)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool> {
        let name = key_name(key);
        let new = Bytes::from(new);
        loop {
            let current = self.current(&name).await?;
            if current.value.as_deref() != expected {
                return Ok(false);
            }
            if self.write_at(&name, new.clone(), current.revision).await? {
                return Ok(true);
            }
            // Written in between: if the value is still `expected` (written
            // again unchanged) the swap may still happen; look again.
        }
    }
}

fn parse_counter(key: &str, bytes: &[u8]) -> Result<u64> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| BackendError::InvalidValue {
            key: key.to_string(),
            reason: "not a decimal number, so it cannot be incremented".into(),
        })
}

/// Leases of one namespace on NATS JetStream: [`KvLeases`] over the bucket
/// `gust_lease_<ns>`, claimed by revision checks on the server, so atomic
/// across nodes; a holder that dies holds nothing once its expiry (in the
/// value, on the claimer's clock) has passed.
pub struct NatsLeases {
    inner: KvLeases,
}

impl std::fmt::Debug for NatsLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLeases").finish_non_exhaustive()
    }
}

impl NatsLeases {
    /// Connects to `url`; leases are kept apart per `namespace`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Ok(Self::with_context(jetstream(url).await?, namespace))
    }

    /// Like [`NatsLeases::connect`], on an existing JetStream context.
    pub fn with_context(js: jetstream::Context, namespace: &str) -> Self {
        let bucket = format!("gust_lease_{}", escape(namespace));
        let store = NatsStore::new(js, bucket, None);
        Self {
            inner: KvLeases::new(Arc::new(store)),
        }
    }
}

#[async_trait]
impl Lease for NatsLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.inner.acquire(name, holder, ttl).await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        self.inner.release(name, holder).await
    }
}

/// Dedupe of one namespace on NATS JetStream: the bucket `gust_dedupe_<ns>`
/// whose `max_age` is the window; recording is `create` (insert if absent,
/// a revision check on the server), so it is shared by every process on
/// the same server. One bucket per namespace: a second window for the same
/// namespace changes the bucket's `max_age` for both.
pub struct NatsDedupe {
    store: NatsStore,
}

impl std::fmt::Debug for NatsDedupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDedupe")
            .field("bucket", &self.store.bucket)
            .finish_non_exhaustive()
    }
}

impl NatsDedupe {
    /// Connects to `url`; keys are remembered for `window` (the server
    /// needs at least 100 ms), kept apart per `namespace`.
    pub async fn connect(url: &str, namespace: &str, window: Duration) -> Result<Self> {
        Ok(Self::with_context(jetstream(url).await?, namespace, window))
    }

    /// Like [`NatsDedupe::connect`], on an existing JetStream context.
    pub fn with_context(js: jetstream::Context, namespace: &str, window: Duration) -> Self {
        let bucket = format!("gust_dedupe_{}", escape(namespace));
        Self {
            store: NatsStore::new(js, bucket, Some(window.max(Duration::from_millis(100)))),
        }
    }
}

#[async_trait]
impl Dedupe for NatsDedupe {
    async fn first_seen(&self, key: &str) -> Result<bool> {
        let name = key_digest_hex(key);
        match self.store.kv().await?.create(&name, Bytes::new()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(BackendError::engine(
                "nats dedupe",
                format!("create {name} in {}: {e}", self.store.bucket),
            )),
        }
    }

    async fn forget(&self, key: &str) -> Result<()> {
        let name = key_digest_hex(key);
        self.store.kv().await?.purge(&name).await.map_err(|e| {
            BackendError::engine(
                "nats dedupe",
                format!("purge {name} in {}: {e}", self.store.bucket),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_round_trip() {
        for key in ["", "a", "a.b c/ü_", "_", "-x-"] {
            assert_eq!(key_from_name(&key_name(key)).as_deref(), Some(key));
        }
        assert_eq!(key_name(""), "_");
        assert_eq!(key_name("a.b"), "a_2eb");
    }
}
