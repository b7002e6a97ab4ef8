//! Document tables and their change feeds on PostgreSQL ([`PgTables`]).
//!
//! # Layout
//!
//! Every table of an app lives in three tables of the app's schema
//! ([`schema_name`]`(namespace)`, e.g. `gust_shop`):
//!
//! - `table_heads(name, last_seq)`: one row per Gust table with its newest
//!   sequence number;
//! - `table_docs(tbl, key, body, doc, version)`: the documents. `body` is the
//!   `bytea` as written (the trait takes arbitrary bytes); `doc` is the same
//!   body as `jsonb` when it is UTF-8 JSON that PostgreSQL accepts, `NULL`
//!   otherwise (computed on the server by `gust_try_jsonb`), so the
//!   documents can be queried with PostgreSQL's JSON operators;
//! - `table_changes(tbl, seq, key, deleted, body, at)`: the change feed (an
//!   outbox written in the same transaction as the document). Every change
//!   is kept (compaction is future work, as in the embedded backend).
//!
//! Keys and table names use the `"C"` collation, so `scan` returns keys in
//! byte order like the embedded backend. PostgreSQL text cannot hold NUL,
//! so a key or table name containing `\0` is rejected by the server.
//!
//! # Why the change feed never shows a gap that is filled later
//!
//! A write takes the next sequence by incrementing its table's row in
//! `table_heads`, in the same transaction as the document and the change
//! row. The row lock that the increment takes is held until the transaction
//! commits, so the writer of sequence `n + 1` can only get its number once
//! the writer of `n` has committed (or rolled back, which also undoes its
//! increment): sequences are gap-free and commit in sequence order, and a
//! reader that sees `n` has already been able to see everything below `n`.
//! (A plain `bigserial` would commit out of order: a reader at 12 could
//! later see 11 appear, and a rolled-back write would leave a hole.)
//!
//! The price is that writes to one table are serialised (one commit at a
//! time per table; writes to different tables do not wait for each other).
//! An upsert is a single statement (one round trip holding the lock); a
//! delete is a short transaction (lock, delete, then commit, or roll back
//! when the key did not exist, so no sequence is spent on it). Measured
//! with `examples/feeds_bench.rs` (release, PostgreSQL 15 on the same
//! 2-core machine, under load from other builds): one writer 570-1090
//! puts/s (p50 0.4-0.6 ms); eight writers on one table 980-1150 puts/s
//! (p50 3.8-4.8 ms, p99 36-45 ms, as they queue for the lock); change-feed
//! lag from `put` returning to a reader having the change p50 0.2-0.4 ms,
//! p99 5-9 ms.
//!
//! Logical decoding (`pgoutput` / `test_decoding`) was the other choice:
//! it needs `wal_level = logical`, which the server here does not have
//! (`SHOW wal_level` says `replica`; changing it needs a restart), a
//! replication slot per reader that holds WAL back while the reader is
//! away, and it gives commit order but not a dense per-table sequence that
//! a consumer can checkpoint and resume from. The outbox needs nothing
//! from the server's configuration.
//!
//! # Waking readers
//!
//! Each write also runs `pg_notify(<channel>, '<seq>:<table>')` (delivered
//! at commit). One dedicated connection per [`PgTables`] `LISTEN`s on the
//! app's channel (`gust_tables_` and a hash of the schema name, as channel
//! names are limited to 63 bytes) and moves each open table's head, so
//! `wait_for_change` wakes on a write from any process. When that
//! connection is lost it reconnects, listens again and re-reads the heads
//! of the open tables, so a notification lost meanwhile delays nobody past
//! the reconnect. `wait_for_change` itself asks the database first, so it
//! never sleeps while a change is already there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use super::{connect, schema_name};
use crate::table::{Change, ChangeFeed, ChangeKind, Document, Table, TableProvider};
use crate::{BackendError, Result};

const BACKEND: &str = "postgres table";

/// Pause before trying again when the listening connection cannot be made.
const RELISTEN_PAUSE: Duration = Duration::from_secs(1);

fn engine(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, format!("{what}: {e}"))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// 64-bit FNV-1a, for a short channel name.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The `LISTEN` channel of a schema's tables.
fn channel_name(schema: &str) -> String {
    format!("gust_tables_{:016x}", fnv1a64(schema.as_bytes()))
}

/// The smallest string greater than every string starting with `prefix`
/// (in byte order), or `None` when there is none (empty prefix, or only
/// `char::MAX`).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The statements, with the schema filled in.
struct Statements {
    put: String,
    bump: String,
    delete: String,
    get: String,
    changes: String,
    last: String,
    heads: String,
    /// `scan` with (after, upper bound) present or not.
    scan: [String; 4],
}

impl Statements {
    fn new(s: &str) -> Self {
        let bump = format!(
            "INSERT INTO {s}.table_heads AS t (name, last_seq) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET last_seq = t.last_seq + 1 RETURNING last_seq"
        );
        let put = format!(
            "WITH h AS ({bump}), \
             d AS (INSERT INTO {s}.table_docs AS x (tbl, key, body, doc, version) \
                   SELECT $1, $2, $3, {s}.gust_try_jsonb($3), last_seq FROM h \
                   ON CONFLICT (tbl, key) DO UPDATE \
                   SET body = excluded.body, doc = excluded.doc, version = excluded.version), \
             c AS (INSERT INTO {s}.table_changes (tbl, seq, key, deleted, body) \
                   SELECT $1, last_seq, $2, false, $3 FROM h) \
             SELECT last_seq, pg_notify($4, last_seq || ':' || $1)::text FROM h"
        );
        let delete = format!(
            "WITH d AS (DELETE FROM {s}.table_docs WHERE tbl = $1 AND key = $2 RETURNING key), \
             c AS (INSERT INTO {s}.table_changes (tbl, seq, key, deleted, body) \
                   SELECT $1, $3, key, true, NULL FROM d) \
             SELECT pg_notify($4, $3 || ':' || $1)::text FROM d"
        );
        let scan_base =
            format!("SELECT key, body, version FROM {s}.table_docs WHERE tbl = $1 AND key >= $2");
        let scan = [
            format!("{scan_base} ORDER BY key LIMIT $3"),
            format!("{scan_base} AND key > $4 ORDER BY key LIMIT $3"),
            format!("{scan_base} AND key < $5 ORDER BY key LIMIT $3"),
            format!("{scan_base} AND key > $4 AND key < $5 ORDER BY key LIMIT $3"),
        ];
        Self {
            put,
            delete,
            get: format!("SELECT body, version FROM {s}.table_docs WHERE tbl = $1 AND key = $2"),
            changes: format!(
                "SELECT seq, key, deleted, body, \
                 (extract(epoch FROM at) * 1000)::bigint AS at_ms \
                 FROM {s}.table_changes WHERE tbl = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            last: format!("SELECT last_seq FROM {s}.table_heads WHERE name = $1"),
            heads: format!("SELECT name, last_seq FROM {s}.table_heads WHERE name = ANY($1)"),
            bump,
            scan,
        }
    }
}

/// The set-up of a schema, run under an advisory lock so concurrent
/// `connect`s do not trip over each other.
fn setup_statements(s: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.table_heads (\
             name text COLLATE \"C\" PRIMARY KEY, last_seq bigint NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.table_docs (\
             tbl text COLLATE \"C\" NOT NULL, key text COLLATE \"C\" NOT NULL, \
             body bytea NOT NULL, doc jsonb, version bigint NOT NULL, \
             PRIMARY KEY (tbl, key))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.table_changes (\
             tbl text COLLATE \"C\" NOT NULL, seq bigint NOT NULL, \
             key text COLLATE \"C\" NOT NULL, deleted boolean NOT NULL, body bytea, \
             at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (tbl, seq))"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION {s}.gust_try_jsonb(b bytea) RETURNS jsonb \
             LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $f$ \
             BEGIN RETURN convert_from(b, 'UTF8')::jsonb; \
             EXCEPTION WHEN others THEN RETURN NULL; END $f$"
        ),
    ]
}

/// Each open table's newest known sequence, moved by local writes and by
/// notifications from every process.
#[derive(Default)]
struct Heads(Mutex<HashMap<String, watch::Sender<u64>>>);

impl Heads {
    fn get(&self, table: &str) -> watch::Sender<u64> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(table.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .clone()
    }

    fn advance(&self, table: &str, seq: u64) {
        let head = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .cloned();
        if let Some(head) = head {
            head.send_if_modified(|h| {
                let moved = seq > *h;
                *h = (*h).max(seq);
                moved
            });
        }
    }

    fn names(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

struct Inner {
    pool: PgPool,
    schema: String,
    channel: String,
    sql: Statements,
    heads: Arc<Heads>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Tables with change feeds on PostgreSQL: a [`TableProvider`].
///
/// Cheap to clone; clones share one connection pool and one listening
/// connection.
#[derive(Clone)]
pub struct PgTables {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTables")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PgTables {
    /// Connects to `url` (`postgres://user@host:port/db`), creates the
    /// schema of `namespace` ([`schema_name`]) and its tables when missing,
    /// and starts listening for writes.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let pool = connect(url).await?;
        Self::with_pool(pool, namespace).await
    }

    /// Like [`PgTables::connect`], on an existing pool.
    pub async fn with_pool(pool: PgPool, namespace: &str) -> Result<Self> {
        let schema = schema_name(namespace);
        // A concurrent `CREATE SCHEMA IF NOT EXISTS` outside our lock (another
        // resource kind) can still fail once with a duplicate: try again.
        if let Err(first) = setup(&pool, &schema).await {
            setup(&pool, &schema).await.map_err(|_| first)?;
        }
        let channel = channel_name(&schema);
        let heads = Arc::new(Heads::default());
        let listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| engine("cannot open the listening connection", e))?;
        let mut listener = listener;
        listener
            .listen(&channel)
            .await
            .map_err(|e| engine(&format!("LISTEN {channel}"), e))?;
        let sql = Statements::new(&schema);
        let task = tokio::spawn(listen(
            listener,
            pool.clone(),
            sql.heads.clone(),
            heads.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                schema,
                channel,
                sql,
                heads,
                listener: task,
            }),
        })
    }

    /// The schema holding this namespace's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The channel writes are announced on (`NOTIFY`), for tools that want
    /// to follow the app's tables too.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Table `name` (same as [`TableProvider::open`], without the boxing).
    pub fn open_table(&self, name: &str) -> Result<PgTable> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        Ok(PgTable {
            inner: self.inner.clone(),
            head: self.inner.heads.get(name),
            name: name.to_string(),
        })
    }
}

async fn setup(pool: &PgPool, schema: &str) -> Result<()> {
    let mut txn = pool
        .begin()
        .await
        .map_err(|e| engine("BEGIN (schema set-up)", e))?;
    let lock = "SELECT pg_advisory_xact_lock(hashtext('gust schema ' || $1))";
    sqlx::query(lock)
        .bind(schema)
        .execute(&mut *txn)
        .await
        .map_err(|e| engine(lock, e))?;
    for statement in setup_statements(schema) {
        sqlx::query(&statement)
            .execute(&mut *txn)
            .await
            .map_err(|e| engine(&statement, e))?;
    }
    txn.commit()
        .await
        .map_err(|e| engine("COMMIT (schema set-up)", e))
}

/// The listening loop: moves heads on notifications; after a lost
/// connection (reconnected by `PgListener`, which listens again), re-reads
/// the heads of the open tables.
async fn listen(mut listener: PgListener, pool: PgPool, heads_sql: String, heads: Arc<Heads>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                if let Some((seq, table)) = n.payload().split_once(':')
                    && let Ok(seq) = seq.parse::<u64>()
                {
                    heads.advance(table, seq);
                }
            }
            Ok(None) => refresh(&pool, &heads_sql, &heads).await,
            Err(e) => {
                tracing::warn!(error = %e, "postgres table listener lost its connection");
                tokio::time::sleep(RELISTEN_PAUSE).await;
                refresh(&pool, &heads_sql, &heads).await;
            }
        }
    }
}

async fn refresh(pool: &PgPool, heads_sql: &str, heads: &Heads) {
    let names = heads.names();
    match sqlx::query(heads_sql).bind(&names).fetch_all(pool).await {
        Ok(rows) => {
            for row in rows {
                let name: String = row.get(0);
                heads.advance(&name, to_u64(row.get(1)));
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot re-read postgres table heads"),
    }
}

impl TableProvider for PgTables {
    fn open(&self, name: &str) -> Result<Arc<dyn Table>> {
        Ok(Arc::new(self.open_table(name)?))
    }
}

/// One table of a [`PgTables`] schema.
pub struct PgTable {
    inner: Arc<Inner>,
    name: String,
    head: watch::Sender<u64>,
}

impl std::fmt::Debug for PgTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTable")
            .field("schema", &self.inner.schema)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PgTable {
    fn advance(&self, seq: u64) {
        self.head.send_if_modified(|h| {
            let moved = seq > *h;
            *h = (*h).max(seq);
            moved
        });
    }
}

#[async_trait]
impl ChangeFeed for PgTable {
    async fn changes(&self, after: u64, max: usize) -> Result<Vec<Change>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql.changes;
        let rows = sqlx::query(sql)
            .bind(&self.name)
            .bind(to_i64(after))
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| engine(sql, e))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let deleted: bool = row.get(2);
                let at_ms: i64 = row.get(4);
                Change {
                    sequence: to_u64(row.get(0)),
                    key: row.get(1),
                    kind: if deleted {
                        ChangeKind::Delete
                    } else {
                        ChangeKind::Upsert
                    },
                    body: row.get(3),
                    at: UNIX_EPOCH + Duration::from_millis(to_u64(at_ms)),
                }
            })
            .collect())
    }

    async fn last_sequence(&self) -> Result<u64> {
        let sql = &self.inner.sql.last;
        let last: Option<i64> = sqlx::query_scalar(sql)
            .bind(&self.name)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| engine(sql, e))?;
        let last = last.map_or(0, to_u64);
        self.advance(last);
        Ok(last)
    }

    async fn wait_for_change(&self, after: u64, timeout: Duration) {
        // Watch before asking, so a write in between is not missed.
        let mut head = self.head.subscribe();
        match self.last_sequence().await {
            Ok(last) if last > after => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "wait_for_change cannot read the head");
            }
        }
        let _ = tokio::time::timeout(timeout, head.wait_for(|h| *h > after)).await;
    }
}

#[async_trait]
impl Table for PgTable {
    async fn get(&self, key: &str) -> Result<Option<Document>> {
        let sql = &self.inner.sql.get;
        let row = sqlx::query(sql)
            .bind(&self.name)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| engine(sql, e))?;
        Ok(row.map(|row| Document {
            key: key.to_string(),
            body: row.get(0),
            version: to_u64(row.get(1)),
        }))
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<u64> {
        let sql = &self.inner.sql.put;
        let seq: i64 = sqlx::query_scalar(sql)
            .bind(&self.name)
            .bind(key)
            .bind(body)
            .bind(&self.inner.channel)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| engine(sql, e))?;
        let seq = to_u64(seq);
        self.advance(seq);
        Ok(seq)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let sql = &self.inner.sql;
        let mut txn = self
            .inner
            .pool
            .begin()
            .await
            .map_err(|e| engine("BEGIN", e))?;
        // Take the table's sequence (and its lock) first, like `put`, so
        // the two never wait for each other in opposite orders.
        let seq: i64 = sqlx::query_scalar(&sql.bump)
            .bind(&self.name)
            .fetch_one(&mut *txn)
            .await
            .map_err(|e| engine(&sql.bump, e))?;
        let deleted = sqlx::query(&sql.delete)
            .bind(&self.name)
            .bind(key)
            .bind(seq)
            .bind(&self.inner.channel)
            .fetch_optional(&mut *txn)
            .await
            .map_err(|e| engine(&sql.delete, e))?
            .is_some();
        if deleted {
            txn.commit().await.map_err(|e| engine("COMMIT", e))?;
            self.advance(to_u64(seq));
        } else {
            // Gives the sequence back.
            txn.rollback().await.map_err(|e| engine("ROLLBACK", e))?;
        }
        Ok(deleted)
    }

    async fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Document>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let end = prefix_end(prefix);
        let variant = usize::from(after.is_some()) + 2 * usize::from(end.is_some());
        let sql = &self.inner.sql.scan[variant];
        let mut query = sqlx::query(sql)
            .bind(&self.name)
            .bind(prefix)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        if let Some(after) = after {
            query = query.bind(after);
        } else if end.is_some() {
            // `$4` is not in this statement's text, but `$5` is: bind a
            // placeholder so the numbering holds.
            query = query.bind(None::<String>);
        }
        if let Some(end) = &end {
            query = query.bind(end.as_str());
        }
        let rows = query
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| engine(sql, e))?;
        Ok(rows
            .into_iter()
            .map(|row| Document {
                key: row.get(0),
                body: row.get(1),
                version: to_u64(row.get(2)),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_every_key_with_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("user/").as_deref(), Some("user0"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        for key in ["user/", "user/1", "user/\u{10FFFF}"] {
            assert!(key < prefix_end("user/").unwrap().as_str());
        }
    }

    #[test]
    fn channels_are_short_and_distinct() {
        let a = channel_name(&schema_name(&"x".repeat(200)));
        assert!(a.len() < 63);
        assert_ne!(a, channel_name("gust_y"));
    }
}
