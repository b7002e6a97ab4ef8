//! Key-value stores in one [redb](https://docs.rs/redb) file per app.
//!
//! All stores of an app share one table keyed by `(store, key)`. Reads run on
//! the blocking pool; writes go to one writer thread that applies every write
//! waiting at that moment in a single durable transaction (group commit), so
//! many concurrent writers share one fsync.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::{BackendError, KeyPage, KeyValue, KeyValueProvider, Result};

const TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
const BACKEND: &str = "embedded kv";
/// Most writes folded into one transaction.
const MAX_GROUP: usize = 512;

enum WriteOp {
    Set(String, String, Vec<u8>),
    SetMany(String, Vec<(String, Vec<u8>)>),
    Delete(String, String),
    DeleteMany(String, Vec<String>),
    Increment(String, String, u64),
    /// Store, key, expected value (`None`: absent), new value; answers 1
    /// when it swapped, 0 when not.
    CompareAndSwap(String, String, Option<Vec<u8>>, Vec<u8>),
}

struct WriteJob {
    op: WriteOp,
    reply: oneshot::Sender<Result<u64>>,
}

/// The embedded key-value backend: a [`KeyValueProvider`] over one redb file.
#[derive(Clone)]
pub struct EmbeddedKv {
    db: Arc<Database>,
    writer: mpsc::UnboundedSender<WriteJob>,
}

impl EmbeddedKv {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BackendError::engine(BACKEND, e))?;
        }
        let db = super::open_database(path).map_err(|e| {
            BackendError::engine(BACKEND, format!("cannot open {}: {e}", path.display()))
        })?;
        {
            let txn = db
                .begin_write()
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            txn.open_table(TABLE)
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            txn.commit().map_err(|e| BackendError::engine(BACKEND, e))?;
        }
        let (writer, jobs) = mpsc::unbounded_channel();
        let thread_db = db.clone();
        std::thread::Builder::new()
            .name("gust-kv-writer".into())
            .spawn(move || write_loop(&thread_db, jobs))
            .map_err(|e| BackendError::engine(BACKEND, e))?;
        Ok(Self { db, writer })
    }

    async fn write(&self, op: WriteOp) -> Result<u64> {
        let (reply, done) = oneshot::channel();
        self.writer
            .send(WriteJob { op, reply })
            .map_err(|_| BackendError::engine(BACKEND, "writer thread stopped"))?;
        done.await
            .map_err(|_| BackendError::engine(BACKEND, "writer thread stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>) -> Result<T>
        + Send
        + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db
                .begin_read()
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            let table = txn
                .open_table(TABLE)
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            f(&table)
        })
        .await
        .map_err(|e| BackendError::engine(BACKEND, e))?
    }
}

impl KeyValueProvider for EmbeddedKv {
    fn open(&self, name: &str) -> Result<Arc<dyn KeyValue>> {
        Ok(Arc::new(EmbeddedStore {
            kv: self.clone(),
            store: name.to_string(),
        }))
    }
}

/// One named store inside an [`EmbeddedKv`] file.
struct EmbeddedStore {
    kv: EmbeddedKv,
    store: String,
}

#[async_trait]
impl KeyValue for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (store, key) = (self.store.clone(), key.to_string());
        self.kv
            .read(move |t| {
                let value = t
                    .get((store.as_str(), key.as_str()))
                    .map_err(|e| BackendError::engine(BACKEND, e))?;
                Ok(value.map(|v| v.value().to_vec()))
            })
            .await
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()> {
        self.kv
            .write(WriteOp::Set(self.store.clone(), key.to_string(), value))
            .await
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.kv
            .write(WriteOp::Delete(self.store.clone(), key.to_string()))
            .await
            .map(drop)
    }

    async fn list_keys(&self, cursor: Option<u64>, page_size: usize) -> Result<KeyPage> {
        let store = self.store.clone();
        self.kv
            .read(move |t| {
                let skip = cursor.unwrap_or(0) as usize;
                let start = (store.as_str(), "");
                let mut keys = Vec::new();
                let mut more = false;
                let range = t
                    .range(start..)
                    .map_err(|e| BackendError::engine(BACKEND, e))?;
                for (i, entry) in range.enumerate() {
                    let (k, _) = entry.map_err(|e| BackendError::engine(BACKEND, e))?;
                    let (s, key) = k.value();
                    if s != store {
                        break;
                    }
                    if i < skip {
                        continue;
                    }
                    if keys.len() == page_size {
                        more = true;
                        break;
                    }
                    keys.push(key.to_string());
                }
                let cursor = more.then(|| (skip + keys.len()) as u64);
                Ok(KeyPage { keys, cursor })
            })
            .await
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        self.kv
            .write(WriteOp::Increment(
                self.store.clone(),
                key.to_string(),
                delta,
            ))
            .await
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.kv
            .write(WriteOp::SetMany(self.store.clone(), pairs))
            .await
            .map(drop)
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        self.kv
            .write(WriteOp::DeleteMany(self.store.clone(), keys))
            .await
            .map(drop)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool> {
        let swapped = self
            .kv
            .write(WriteOp::CompareAndSwap(
                self.store.clone(),
                key.to_string(),
                expected.map(<[u8]>::to_vec),
                new,
            ))
            .await?;
        Ok(swapped == 1)
    }
}

/// The writer thread: takes every job waiting, applies them in one
/// transaction, commits durably, then answers each.
fn write_loop(db: &Database, mut jobs: mpsc::UnboundedReceiver<WriteJob>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match apply_group(db, &group) {
            Ok(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded kv commit failed");
                for job in group {
                    let _ = job
                        .reply
                        .send(Err(BackendError::engine(BACKEND, e.to_string())));
                }
            }
        }
    }
}

fn apply_group(db: &Database, group: &[WriteJob]) -> Result<Vec<Result<u64>>> {
    let txn = db
        .begin_write()
        .map_err(|e| BackendError::engine(BACKEND, e))?;
    let mut results = Vec::with_capacity(group.len());
    {
        let mut table = txn
            .open_table(TABLE)
            .map_err(|e| BackendError::engine(BACKEND, e))?;
        for job in group {
            results.push(apply(&mut table, &job.op));
        }
    }
    txn.commit().map_err(|e| BackendError::engine(BACKEND, e))?;
    Ok(results)
}

fn apply(table: &mut redb::Table<(&str, &str), &[u8]>, op: &WriteOp) -> Result<u64> {
    let engine = |e: redb::StorageError| BackendError::engine(BACKEND, e);
    match op {
        WriteOp::Set(store, key, value) => {
            table
                .insert((store.as_str(), key.as_str()), value.as_slice())
                .map_err(engine)?;
        }
        WriteOp::SetMany(store, pairs) => {
            for (key, value) in pairs {
                table
                    .insert((store.as_str(), key.as_str()), value.as_slice())
                    .map_err(engine)?;
            }
        }
        WriteOp::Delete(store, key) => {
            table
                .remove((store.as_str(), key.as_str()))
                .map_err(engine)?;
        }
        WriteOp::DeleteMany(store, keys) => {
            for key in keys {
                table
                    .remove((store.as_str(), key.as_str()))
                    .map_err(engine)?;
            }
        }
        WriteOp::Increment(store, key, delta) => {
            let current = match table.get((store.as_str(), key.as_str())).map_err(engine)? {
                None => 0,
                Some(v) => parse_counter(key, v.value())?,
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| BackendError::InvalidValue {
                    key: key.clone(),
                    reason: "counter would overflow u64".into(),
                })?;
            table
                .insert((store.as_str(), key.as_str()), next.to_string().as_bytes())
                .map_err(engine)?;
            return Ok(next);
        }
        WriteOp::CompareAndSwap(store, key, expected, new) => {
            let id = (store.as_str(), key.as_str());
            let matches = {
                let current = table.get(id).map_err(engine)?;
                current.as_ref().map(|v| v.value()) == expected.as_deref()
            };
            if !matches {
                return Ok(0);
            }
            table.insert(id, new.as_slice()).map_err(engine)?;
            return Ok(1);
        }
    }
    Ok(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> (tempfile::TempDir, EmbeddedKv) {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        (dir, kv)
    }

    #[tokio::test]
    async fn set_get_delete_and_isolation_between_stores() {
        let (_dir, kv) = provider();
        let a = kv.open("a").unwrap();
        let b = kv.open("b").unwrap();
        a.set("k", b"v".to_vec()).await.unwrap();
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(b.get("k").await.unwrap(), None);
        assert!(a.exists("k").await.unwrap());
        a.delete("k").await.unwrap();
        assert!(!a.exists("k").await.unwrap());
        a.delete("missing").await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_increments_are_atomic() {
        let (_dir, kv) = provider();
        let store = kv.open("counts").unwrap();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    s.increment("n", 1).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.increment("n", 0).await.unwrap(), 500);
        assert_eq!(store.get("n").await.unwrap().unwrap(), b"500");
        store.set("text", b"abc".to_vec()).await.unwrap();
        assert!(matches!(
            store.increment("text", 1).await,
            Err(BackendError::InvalidValue { .. })
        ));
    }

    #[tokio::test]
    async fn compare_and_swap_only_on_the_expected_value() {
        let (_dir, kv) = provider();
        let s = kv.open("s").unwrap();
        assert!(s.compare_and_swap("k", None, b"a".to_vec()).await.unwrap());
        assert!(!s.compare_and_swap("k", None, b"b".to_vec()).await.unwrap());
        assert!(
            !s.compare_and_swap("k", Some(b"x"), b"b".to_vec())
                .await
                .unwrap()
        );
        assert!(
            s.compare_and_swap("k", Some(b"a"), b"b".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(s.get("k").await.unwrap().unwrap(), b"b");
        assert!(!s.compare_and_swap("gone", Some(b""), vec![]).await.unwrap());
        assert!(!s.exists("gone").await.unwrap());
    }

    #[tokio::test]
    async fn list_keys_pages_in_order() {
        let (_dir, kv) = provider();
        let s = kv.open("s").unwrap();
        let other = kv.open("t").unwrap();
        other.set("zzz", vec![]).await.unwrap();
        let pairs = (0..5).map(|i| (format!("k{i}"), vec![i as u8])).collect();
        s.set_many(pairs).await.unwrap();
        let first = s.list_keys(None, 3).await.unwrap();
        assert_eq!(first.keys, vec!["k0", "k1", "k2"]);
        let second = s.list_keys(first.cursor, 3).await.unwrap();
        assert_eq!(second.keys, vec!["k3", "k4"]);
        assert_eq!(second.cursor, None);
        s.delete_many(vec!["k0".into(), "k1".into()]).await.unwrap();
        let got = s.get_many(vec!["k0".into(), "k2".into()]).await.unwrap();
        assert_eq!(got, vec![None, Some(("k2".to_string(), vec![2]))]);
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        {
            let kv = EmbeddedKv::open(&path).unwrap();
            kv.open("s").unwrap().set("k", b"v".to_vec()).await.unwrap();
        }
        // The writer thread holds the database until its channel closes.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let kv = EmbeddedKv::open(&path).unwrap();
        assert_eq!(kv.open("s").unwrap().get("k").await.unwrap().unwrap(), b"v");
    }
}
