//! Document tables with change feeds in one [redb](https://docs.rs/redb)
//! file per app (`.gust/data/tables.redb`).
//!
//! Three redb tables hold every app table: `docs` keyed by `(table, key)`
//! with `(version, body)`, `feed` keyed by `(table, sequence)` with the
//! encoded change, and `sequences` with each table's last sequence. A write
//! updates all three in one durable transaction, so the document and its
//! change-feed entry appear together or not at all, even across a SIGKILL.
//! The feed keeps every change (compaction is future work).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::table::{Change, ChangeFeed, ChangeKind, Document, Table, TableProvider};
use crate::{BackendError, Result};

const DOCS: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("docs");
const FEED: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("feed");
const SEQUENCES: TableDefinition<&str, u64> = TableDefinition::new("sequences");
const BACKEND: &str = "embedded table";

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

/// The embedded table backend: a [`TableProvider`] over one redb file.
#[derive(Clone)]
pub struct EmbeddedTables {
    db: Arc<Database>,
    /// Newest sequence per table, for waking change-feed readers.
    heads: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl EmbeddedTables {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(engine)?;
        }
        let db = super::open_database(path)
            .map_err(|e| engine(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(engine)?;
        txn.open_table(DOCS).map_err(engine)?;
        txn.open_table(FEED).map_err(engine)?;
        txn.open_table(SEQUENCES).map_err(engine)?;
        txn.commit().map_err(engine)?;
        Ok(Self {
            db,
            heads: Arc::default(),
        })
    }
}

impl TableProvider for EmbeddedTables {
    fn open(&self, name: &str) -> Result<Arc<dyn Table>> {
        let head = {
            let mut heads = self.heads.lock().expect("heads lock");
            match heads.get(name) {
                Some(head) => head.clone(),
                None => {
                    let txn = self.db.begin_read().map_err(engine)?;
                    let seqs = txn.open_table(SEQUENCES).map_err(engine)?;
                    let last = seqs.get(name).map_err(engine)?.map_or(0, |v| v.value());
                    let head = watch::Sender::new(last);
                    heads.insert(name.to_string(), head.clone());
                    head
                }
            }
        };
        Ok(Arc::new(EmbeddedTable {
            db: self.db.clone(),
            name: name.to_string(),
            head,
        }))
    }
}

/// One table of an [`EmbeddedTables`] file.
pub struct EmbeddedTable {
    db: Arc<Database>,
    name: String,
    head: watch::Sender<u64>,
}

/// Change encoding in the feed: kind byte, millis since epoch (8 bytes),
/// key length (4 bytes), key, body.
fn encode(kind: ChangeKind, at: SystemTime, key: &str, body: &[u8]) -> Vec<u8> {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut out = Vec::with_capacity(13 + key.len() + body.len());
    out.push(match kind {
        ChangeKind::Upsert => 1,
        ChangeKind::Delete => 2,
    });
    out.extend_from_slice(&millis.to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(body);
    out
}

fn decode(sequence: u64, bytes: &[u8]) -> Result<Change> {
    let corrupt = || engine(format!("change {sequence} is corrupt"));
    if bytes.len() < 13 {
        return Err(corrupt());
    }
    let kind = match bytes[0] {
        1 => ChangeKind::Upsert,
        2 => ChangeKind::Delete,
        _ => return Err(corrupt()),
    };
    let millis = u64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let key_len = u32::from_be_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    let key = bytes
        .get(13..13 + key_len)
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(corrupt)?;
    let body = &bytes[13 + key_len..];
    Ok(Change {
        sequence,
        key: key.to_string(),
        kind,
        body: (kind == ChangeKind::Upsert).then(|| body.to_vec()),
        at: UNIX_EPOCH + Duration::from_millis(millis),
    })
}

impl EmbeddedTable {
    /// Applies one write (upsert with `Some(body)`, delete with `None`) in
    /// one durable transaction; returns the new sequence, or `None` for a
    /// delete of a missing key.
    async fn write(&self, key: &str, body: Option<Vec<u8>>) -> Result<Option<u64>> {
        let (db, name, key) = (self.db.clone(), self.name.clone(), key.to_string());
        let written = tokio::task::spawn_blocking(move || -> Result<Option<u64>> {
            let txn = db.begin_write().map_err(engine)?;
            let sequence = {
                let mut docs = txn.open_table(DOCS).map_err(engine)?;
                let mut feed = txn.open_table(FEED).map_err(engine)?;
                let mut seqs = txn.open_table(SEQUENCES).map_err(engine)?;
                let sequence = seqs
                    .get(name.as_str())
                    .map_err(engine)?
                    .map_or(0, |v| v.value())
                    + 1;
                let now = SystemTime::now();
                match &body {
                    Some(body) => {
                        docs.insert((name.as_str(), key.as_str()), (sequence, body.as_slice()))
                            .map_err(engine)?;
                        let change = encode(ChangeKind::Upsert, now, &key, body);
                        feed.insert((name.as_str(), sequence), change.as_slice())
                            .map_err(engine)?;
                    }
                    None => {
                        if docs
                            .remove((name.as_str(), key.as_str()))
                            .map_err(engine)?
                            .is_none()
                        {
                            return Ok(None);
                        }
                        let change = encode(ChangeKind::Delete, now, &key, &[]);
                        feed.insert((name.as_str(), sequence), change.as_slice())
                            .map_err(engine)?;
                    }
                }
                seqs.insert(name.as_str(), sequence).map_err(engine)?;
                sequence
            };
            txn.commit().map_err(engine)?;
            Ok(Some(sequence))
        })
        .await
        .map_err(engine)??;
        if let Some(sequence) = written {
            self.head.send_modify(|head| *head = (*head).max(sequence));
        }
        Ok(written)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (db, name) = (self.db.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(engine)?;
            f(&txn, &name)
        })
        .await
        .map_err(engine)?
    }
}

#[async_trait]
impl ChangeFeed for EmbeddedTable {
    async fn changes(&self, after: u64, max: usize) -> Result<Vec<Change>> {
        self.read(move |txn, name| {
            let feed = txn.open_table(FEED).map_err(engine)?;
            let mut out = Vec::new();
            for entry in feed
                .range((name, after + 1)..=(name, u64::MAX))
                .map_err(engine)?
            {
                if out.len() >= max {
                    break;
                }
                let (k, v) = entry.map_err(engine)?;
                out.push(decode(k.value().1, v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn last_sequence(&self) -> Result<u64> {
        Ok(*self.head.borrow())
    }

    async fn wait_for_change(&self, after: u64, timeout: Duration) {
        let mut head = self.head.subscribe();
        let _ = tokio::time::timeout(timeout, head.wait_for(|h| *h > after)).await;
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &str) -> Result<Option<Document>> {
        let key = key.to_string();
        self.read(move |txn, name| {
            let docs = txn.open_table(DOCS).map_err(engine)?;
            Ok(docs.get((name, key.as_str())).map_err(engine)?.map(|v| {
                let (version, body) = v.value();
                Document {
                    key: key.clone(),
                    body: body.to_vec(),
                    version,
                }
            }))
        })
        .await
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<u64> {
        Ok(self
            .write(key, Some(body))
            .await?
            .expect("an upsert always writes"))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.write(key, None).await?.is_some())
    }

    async fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Document>> {
        let (prefix, after) = (prefix.to_string(), after.map(str::to_string));
        self.read(move |txn, name| {
            let docs = txn.open_table(DOCS).map_err(engine)?;
            let start = match &after {
                Some(a) if a.as_str() >= prefix.as_str() => a.as_str(),
                _ => prefix.as_str(),
            };
            let mut out = Vec::new();
            for entry in docs.range((name, start)..).map_err(engine)? {
                let (k, v) = entry.map_err(engine)?;
                let (table, key) = k.value();
                if table != name || !key.starts_with(prefix.as_str()) || out.len() >= limit {
                    break;
                }
                if after.as_deref() == Some(key) {
                    continue;
                }
                let (version, body) = v.value();
                out.push(Document {
                    key: key.to_string(),
                    body: body.to_vec(),
                    version,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_feed_the_change_feed_in_order_with_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let tables = EmbeddedTables::open(&dir.path().join("t.redb")).unwrap();
        let t = tables.open("contacts").unwrap();
        let other = tables.open("other").unwrap();
        assert_eq!(t.put("a", b"1".to_vec()).await.unwrap(), 1);
        assert_eq!(other.put("a", b"x".to_vec()).await.unwrap(), 1);
        assert_eq!(t.put("b", b"2".to_vec()).await.unwrap(), 2);
        assert_eq!(t.put("a", b"3".to_vec()).await.unwrap(), 3);
        assert!(t.delete("b").await.unwrap());
        assert!(!t.delete("missing").await.unwrap());
        let changes = t.changes(0, 100).await.unwrap();
        let seen: Vec<_> = changes
            .iter()
            .map(|c| (c.sequence, c.key.as_str(), c.kind, c.body.clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, "a", ChangeKind::Upsert, Some(b"1".to_vec())),
                (2, "b", ChangeKind::Upsert, Some(b"2".to_vec())),
                (3, "a", ChangeKind::Upsert, Some(b"3".to_vec())),
                (4, "b", ChangeKind::Delete, None),
            ]
        );
        assert_eq!(t.changes(2, 1).await.unwrap()[0].sequence, 3);
        assert_eq!(t.last_sequence().await.unwrap(), 4);
        let doc = t.get("a").await.unwrap().unwrap();
        assert_eq!((doc.body.as_slice(), doc.version), (&b"3"[..], 3));
        assert_eq!(t.get("b").await.unwrap(), None);
        assert_eq!(other.get("a").await.unwrap().unwrap().body, b"x");
    }

    #[tokio::test]
    async fn scan_pages_by_prefix_and_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let t = EmbeddedTables::open(&path).unwrap().open("t").unwrap();
            for key in ["user/1", "user/2", "user/3", "video/1"] {
                t.put(key, key.as_bytes().to_vec()).await.unwrap();
            }
        }
        let t = EmbeddedTables::open(&path).unwrap().open("t").unwrap();
        assert_eq!(t.last_sequence().await.unwrap(), 4);
        let keys = |docs: Vec<Document>| docs.into_iter().map(|d| d.key).collect::<Vec<_>>();
        assert_eq!(
            keys(t.scan("user/", None, 2).await.unwrap()),
            ["user/1", "user/2"]
        );
        assert_eq!(
            keys(t.scan("user/", Some("user/2"), 10).await.unwrap()),
            ["user/3"]
        );
        assert_eq!(keys(t.scan("", None, 10).await.unwrap()).len(), 4);
    }

    #[tokio::test]
    async fn waiting_readers_wake_on_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let tables = EmbeddedTables::open(&dir.path().join("t.redb")).unwrap();
        let t = tables.open("t").unwrap();
        let writer = tables.open("t").unwrap();
        let wait = tokio::spawn(async move {
            t.wait_for_change(0, Duration::from_secs(10)).await;
            t.last_sequence().await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.put("k", vec![]).await.unwrap();
        assert_eq!(wait.await.unwrap(), 1);
    }
}
