//! Key-value stores on PostgreSQL: every store (bucket) of a namespace in
//! one table `<schema>.gust_kv (bucket, key, value bytea)`, keyed by
//! `(bucket, key)`, keys ordered byte-wise (`COLLATE "C"`, like the embedded
//! backend).
//!
//! Every operation is one statement, so each is atomic on the server:
//! `increment` is an `INSERT .. ON CONFLICT DO UPDATE .. RETURNING`,
//! `compare_and_swap` an `INSERT .. ON CONFLICT DO NOTHING` (expecting no
//! value) or a conditional `UPDATE`, `set_many` one `INSERT .. SELECT FROM
//! unnest(..)`. `list_keys` cursors are positions (`OFFSET`), as embedded.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgPool;

use super::{connect, schema_name};
use crate::{BackendError, KeyPage, KeyValue, KeyValueProvider, Result};

const BACKEND: &str = "postgres kv";

/// SQLSTATEs an `increment` of a value that is not a decimal number raises
/// (see [`PgKv`]): not-null violation, invalid text representation, bad
/// UTF-8, numeric out of range.
const NOT_A_NUMBER: [&str; 4] = ["23502", "22P02", "22021", "22003"];

/// A failed statement as a [`BackendError`] naming the engine and the SQL.
pub(crate) fn sql_error(backend: &'static str, sql: &str, e: sqlx::Error) -> BackendError {
    BackendError::engine(backend, format!("{e} (statement: {})", one_line(sql)))
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Creates `schema` and runs `ddl` (`CREATE TABLE IF NOT EXISTS ..`) under a
/// transaction-scoped advisory lock on the schema's name, so that several
/// processes setting up the same namespace at once do not trip over each
/// other (concurrent `CREATE .. IF NOT EXISTS` can fail on a unique index).
pub(crate) async fn ensure_tables(
    pool: &PgPool,
    backend: &'static str,
    schema: &str,
    ddl: &[String],
) -> Result<()> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| BackendError::engine(backend, e))?;
    let lock = "SELECT pg_advisory_xact_lock(hashtext($1))";
    sqlx::query(lock)
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(|e| sql_error(backend, lock, e))?;
    let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
    let statements = std::iter::once(&create).chain(ddl);
    for sql in statements {
        sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| sql_error(backend, sql, e))?;
    }
    tx.commit()
        .await
        .map_err(|e| BackendError::engine(backend, e))
}

/// Statements of one namespace, with the schema filled in.
struct Statements {
    get: String,
    exists: String,
    set: String,
    delete: String,
    list: String,
    increment: String,
    get_many: String,
    set_many: String,
    delete_many: String,
    insert_if_absent: String,
    update_if_equal: String,
}

impl Statements {
    fn new(schema: &str) -> Self {
        let t = format!("{schema}.gust_kv");
        Self {
            get: format!("SELECT value FROM {t} WHERE bucket = $1 AND key = $2"),
            exists: format!("SELECT EXISTS (SELECT 1 FROM {t} WHERE bucket = $1 AND key = $2)"),
            set: format!(
                "INSERT INTO {t} (bucket, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: format!("DELETE FROM {t} WHERE bucket = $1 AND key = $2"),
            list: format!("SELECT key FROM {t} WHERE bucket = $1 ORDER BY key LIMIT $2 OFFSET $3"),
            // A value that is not decimal digits (optionally padded with
            // whitespace) becomes NULL, which the NOT NULL column refuses:
            // the error is how one statement reports "not a number".
            increment: format!(
                "INSERT INTO {t} AS kv (bucket, key, value) \
                 VALUES ($1, $2, convert_to($3::numeric::text, 'UTF8')) \
                 ON CONFLICT (bucket, key) DO UPDATE SET value = \
                   CASE WHEN convert_from(kv.value, 'UTF8') ~ '^\\s*[0-9]+\\s*$' \
                     AND trim(convert_from(kv.value, 'UTF8'))::numeric + $3::numeric \
                         <= 18446744073709551615 \
                   THEN convert_to((trim(convert_from(kv.value, 'UTF8'))::numeric \
                                    + $3::numeric)::text, 'UTF8') \
                   END \
                 RETURNING convert_from(value, 'UTF8')"
            ),
            get_many: format!("SELECT key, value FROM {t} WHERE bucket = $1 AND key = ANY($2)"),
            set_many: format!(
                "INSERT INTO {t} (bucket, key, value) \
                 SELECT $1, k, v FROM unnest($2::text[], $3::bytea[]) AS p(k, v) \
                 ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete_many: format!("DELETE FROM {t} WHERE bucket = $1 AND key = ANY($2)"),
            insert_if_absent: format!(
                "INSERT INTO {t} (bucket, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (bucket, key) DO NOTHING"
            ),
            update_if_equal: format!(
                "UPDATE {t} SET value = $3 WHERE bucket = $1 AND key = $2 AND value = $4"
            ),
        }
    }
}

/// Key-value stores of one namespace on PostgreSQL: a [`KeyValueProvider`].
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PgKv {
    pool: PgPool,
    schema: String,
    sql: Arc<Statements>,
}

impl std::fmt::Debug for PgKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKv")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PgKv {
    /// Connects to `url` (`postgres://user@host:port/db`) and creates the
    /// schema [`schema_name`]`(namespace)` and its `gust_kv` table if missing.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::with_pool(connect(url).await?, namespace).await
    }

    /// Like [`PgKv::connect`], on an existing pool (to share one pool
    /// between resources).
    pub async fn with_pool(pool: PgPool, namespace: &str) -> Result<Self> {
        let schema = schema_name(namespace);
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {schema}.gust_kv (\
               bucket text NOT NULL, \
               key text COLLATE \"C\" NOT NULL, \
               value bytea NOT NULL, \
               PRIMARY KEY (bucket, key))"
        );
        ensure_tables(&pool, BACKEND, &schema, &[ddl]).await?;
        Ok(Self {
            sql: Arc::new(Statements::new(&schema)),
            pool,
            schema,
        })
    }

    /// The schema holding this namespace's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl KeyValueProvider for PgKv {
    fn open(&self, name: &str) -> Result<Arc<dyn KeyValue>> {
        Ok(Arc::new(PgStore {
            kv: self.clone(),
            bucket: name.to_string(),
        }))
    }
}

/// One store (bucket) of a [`PgKv`].
struct PgStore {
    kv: PgKv,
    bucket: String,
}

impl PgStore {
    fn pool(&self) -> &PgPool {
        &self.kv.pool
    }

    fn sql(&self) -> &Statements {
        &self.kv.sql
    }
}

fn err(sql: &str) -> impl FnOnce(sqlx::Error) -> BackendError + '_ {
    move |e| sql_error(BACKEND, sql, e)
}

#[async_trait]
impl KeyValue for PgStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let sql = &self.sql().get;
        sqlx::query_scalar(sql)
            .bind(&self.bucket)
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(err(sql))
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let sql = &self.sql().set;
        sqlx::query(sql)
            .bind(&self.bucket)
            .bind(key)
            .bind(value)
            .execute(self.pool())
            .await
            .map_err(err(sql))
            .map(drop)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let sql = &self.sql().delete;
        sqlx::query(sql)
            .bind(&self.bucket)
            .bind(key)
            .execute(self.pool())
            .await
            .map_err(err(sql))
            .map(drop)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let sql = &self.sql().exists;
        sqlx::query_scalar(sql)
            .bind(&self.bucket)
            .bind(key)
            .fetch_one(self.pool())
            .await
            .map_err(err(sql))
    }

    async fn list_keys(&self, cursor: Option<u64>, page_size: usize) -> Result<KeyPage> {
        let sql = &self.sql().list;
        let skip = cursor.unwrap_or(0);
        // One more than asked, to know whether another page follows.
        let mut keys: Vec<String> = sqlx::query_scalar(sql)
            .bind(&self.bucket)
            .bind(i64::try_from(page_size).unwrap_or(i64::MAX - 1) + 1)
            .bind(i64::try_from(skip).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(err(sql))?;
        let more = keys.len() > page_size;
        keys.truncate(page_size);
        let cursor = more.then(|| skip + keys.len() as u64);
        Ok(KeyPage { keys, cursor })
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        let sql = &self.sql().increment;
        let result: std::result::Result<String, sqlx::Error> = sqlx::query_scalar(sql)
            .bind(&self.bucket)
            .bind(key)
            .bind(delta.to_string())
            .fetch_one(self.pool())
            .await;
        match result {
            Ok(text) => text.parse().map_err(|_| BackendError::InvalidValue {
                key: key.to_string(),
                reason: format!("the counter became `{text}`, not a u64"),
            }),
            Err(e)
                if e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| NOT_A_NUMBER.contains(&c.as_ref())) =>
            {
                Err(BackendError::InvalidValue {
                    key: key.to_string(),
                    reason: "not a decimal number, or the counter would overflow u64, \
                             so it cannot be incremented"
                        .into(),
                })
            }
            Err(e) => Err(sql_error(BACKEND, sql, e)),
        }
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        let sql = &self.sql().get_many;
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(sql)
            .bind(&self.bucket)
            .bind(&keys)
            .fetch_all(self.pool())
            .await
            .map_err(err(sql))?;
        let found: HashMap<String, Vec<u8>> = rows.into_iter().collect();
        Ok(keys
            .into_iter()
            .map(|k| found.get(&k).cloned().map(|v| (k, v)))
            .collect())
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<()> {
        // One row per key (the last value wins, as when set one by one):
        // one statement cannot update a row twice.
        let mut last: HashMap<String, Vec<u8>> = HashMap::with_capacity(pairs.len());
        let mut order = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            if last.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        }
        let values: Vec<Vec<u8>> = order
            .iter()
            .map(|k| last.remove(k).unwrap_or_default())
            .collect();
        let sql = &self.sql().set_many;
        sqlx::query(sql)
            .bind(&self.bucket)
            .bind(&order)
            .bind(&values)
            .execute(self.pool())
            .await
            .map_err(err(sql))
            .map(drop)
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        let sql = &self.sql().delete_many;
        sqlx::query(sql)
            .bind(&self.bucket)
            .bind(&keys)
            .execute(self.pool())
            .await
            .map_err(err(sql))
            .map(drop)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool> {
        let done = match expected {
            None => {
                let sql = &self.sql().insert_if_absent;
                sqlx::query(sql)
                    .bind(&self.bucket)
                    .bind(key)
                    .bind(new)
                    .execute(self.pool())
                    .await
                    .map_err(err(sql))?
            }
            Some(expected) => {
                let sql = &self.sql().update_if_equal;
                sqlx::query(sql)
                    .bind(&self.bucket)
                    .bind(key)
                    .bind(new)
                    .bind(expected)
                    .execute(self.pool())
                    .await
                    .map_err(err(sql))?
            }
        };
        Ok(done.rows_affected() == 1)
    }
}
