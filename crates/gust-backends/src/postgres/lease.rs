//! Leases on PostgreSQL: one row per lease name in `<schema>.gust_leases
//! (name, holder, expires_at)`, claimed by one statement that also decides
//! (an `INSERT .. ON CONFLICT (name) DO UPDATE .. WHERE` the row is the
//! holder's own or expired), with expiry on the server's clock. A holder
//! that dies (even by SIGKILL) holds nothing once its ttl has passed.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPool;

use super::kv::{ensure_tables, sql_error};
use super::{connect, schema_name};
use crate::{Lease, Result};

const BACKEND: &str = "postgres lease";

/// Leases of one namespace on PostgreSQL: a [`Lease`] that is atomic across
/// every process using the same database and namespace.
#[derive(Clone)]
pub struct PgLeases {
    pool: PgPool,
    schema: String,
    acquire: String,
    release: String,
}

impl std::fmt::Debug for PgLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeases")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgLeases {
    /// Connects to `url` and creates the schema [`schema_name`]`(namespace)`
    /// and its `gust_leases` table if missing.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::with_pool(connect(url).await?, namespace).await
    }

    /// Like [`PgLeases::connect`], on an existing pool.
    pub async fn with_pool(pool: PgPool, namespace: &str) -> Result<Self> {
        let schema = schema_name(namespace);
        let t = format!("{schema}.gust_leases");
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (\
               name text PRIMARY KEY, \
               holder text NOT NULL, \
               expires_at timestamptz NOT NULL)"
        );
        ensure_tables(&pool, BACKEND, &schema, &[ddl]).await?;
        // `clock_timestamp()`, not `now()`: the time of the statement, not
        // of a transaction that may have waited on a concurrent claim.
        let acquire = format!(
            "INSERT INTO {t} AS l (name, holder, expires_at) \
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE \
               SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
               WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() \
             RETURNING 1"
        );
        let release = format!("DELETE FROM {t} WHERE name = $1 AND holder = $2");
        Ok(Self {
            pool,
            schema,
            acquire,
            release,
        })
    }

    /// Deletes every expired lease (each is free anyway); returns how many.
    /// Lease names that are used once (a timer slot) pile up otherwise.
    pub async fn purge_expired(&self) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {}.gust_leases WHERE expires_at <= clock_timestamp()",
            self.schema
        );
        let done = sqlx::query(&sql)
            .execute(&self.pool)
            .await
            .map_err(|e| sql_error(BACKEND, &sql, e))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Lease for PgLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let claimed: Option<i32> = sqlx::query_scalar(&self.acquire)
            .bind(name)
            .bind(holder)
            .bind(ttl.as_secs_f64())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| sql_error(BACKEND, &self.acquire, e))?;
        Ok(claimed.is_some())
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(&self.release)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|e| sql_error(BACKEND, &self.release, e))
            .map(drop)
    }
}
