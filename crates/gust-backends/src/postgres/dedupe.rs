//! Dedupe on PostgreSQL: `<schema>.gust_dedupe (digest bytea, expires_at)`
//! holds the [`key_digest`] of every key seen within the window. One
//! statement records and decides: it inserts the digest, or on conflict
//! renews a row whose window has passed, and returns a row only if it did
//! either. Expired rows are deleted in the background, at most once a
//! window (and at least a second apart).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::PgPool;

use super::kv::{ensure_tables, sql_error};
use super::{connect, schema_name};
use crate::Result;
use crate::dedupe::{Dedupe, key_digest};

const BACKEND: &str = "postgres dedupe";

/// Shortest time between two deletions of expired rows.
const MIN_PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// Dedupe of one namespace on PostgreSQL, shared by every process using
/// the same database and namespace.
#[derive(Clone)]
pub struct PgDedupe {
    pool: PgPool,
    schema: String,
    window: Duration,
    record: String,
    purge: String,
    last_purge: Arc<Mutex<Instant>>,
}

impl std::fmt::Debug for PgDedupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDedupe")
            .field("schema", &self.schema)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl PgDedupe {
    /// Connects to `url` and creates the schema [`schema_name`]`(namespace)`
    /// and its `gust_dedupe` table if missing; keys are remembered for
    /// `window`.
    pub async fn connect(url: &str, namespace: &str, window: Duration) -> Result<Self> {
        Self::with_pool(connect(url).await?, namespace, window).await
    }

    /// Like [`PgDedupe::connect`], on an existing pool.
    pub async fn with_pool(pool: PgPool, namespace: &str, window: Duration) -> Result<Self> {
        let schema = schema_name(namespace);
        let t = format!("{schema}.gust_dedupe");
        let ddl = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                   digest bytea PRIMARY KEY, \
                   expires_at timestamptz NOT NULL)"
            ),
            format!("CREATE INDEX IF NOT EXISTS gust_dedupe_expires_at ON {t} (expires_at)"),
        ];
        ensure_tables(&pool, BACKEND, &schema, &ddl).await?;
        let record = format!(
            "INSERT INTO {t} AS d (digest, expires_at) \
             VALUES ($1, clock_timestamp() + make_interval(secs => $2)) \
             ON CONFLICT (digest) DO UPDATE SET expires_at = EXCLUDED.expires_at \
               WHERE d.expires_at <= clock_timestamp() \
             RETURNING 1"
        );
        let purge = format!("DELETE FROM {t} WHERE expires_at <= clock_timestamp()");
        Ok(Self {
            pool,
            schema,
            window,
            record,
            purge,
            last_purge: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// Deletes the rows of keys whose window has passed; returns how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        let done = sqlx::query(&self.purge)
            .execute(&self.pool)
            .await
            .map_err(|e| sql_error(BACKEND, &self.purge, e))?;
        Ok(done.rows_affected())
    }

    /// Starts a purge in the background if the last one is a window old.
    fn maybe_purge(&self) {
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < self.window.max(MIN_PURGE_INTERVAL) {
                return;
            }
            *last = Instant::now();
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.purge_expired().await {
                tracing::warn!("cannot delete expired dedupe rows: {e}");
            }
        });
    }
}

#[async_trait]
impl Dedupe for PgDedupe {
    async fn first_seen(&self, key: &str) -> Result<bool> {
        self.maybe_purge();
        let recorded: Option<i32> = sqlx::query_scalar(&self.record)
            .bind(key_digest(key).as_slice())
            .bind(self.window.as_secs_f64())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| sql_error(BACKEND, &self.record, e))?;
        Ok(recorded.is_some())
    }
}
