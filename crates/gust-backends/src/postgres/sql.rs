//! SQL databases (`gust:function/sql`) on PostgreSQL.
//!
//! # Names
//!
//! [`PgSql::connect`]`(url, namespace)` connects to the database named in
//! the URL (`postgres://user@host:5432/db`). Each resource `name` is a
//! schema in it, [`schema_name`]`(namespace) + "_" + name` (e.g. app
//! `shop`, resource `orders` → schema `gust_shop_orders`; anything but
//! ASCII letters and digits becomes `_`; names over 63 bytes are cut and
//! end in a hash), created on first use. To work on tables that already
//! exist, add `schema=<name>` to the URL's query
//! (`postgres://host/company?schema=public`): every resource then uses that
//! schema as is, and it is never created or dropped.
//!
//! Each resource has its own small connection pool whose connections start
//! with `search_path` set to the resource's schema (a startup parameter, so
//! it costs no round trip), and `statement_timeout` of 30 s.
//!
//! # SQL text
//!
//! Guests write SQLite-style placeholders: `?`, `?1`, `?2`; they become
//! `$1`, `$2` (a `?` inside a string literal, quoted identifier, comment or
//! dollar quote stays). PostgreSQL's jsonb operators `?`, `?|` and `?&`
//! cannot be written (use `jsonb_exists`, `jsonb_exists_any`,
//! `jsonb_exists_all`). Each statement is prepared once per connection and
//! the parameters are sent in the type PostgreSQL inferred for them, so an
//! integer goes into an `int4`, `float8`, `numeric` or `text` parameter
//! alike; text goes into `date`, `timestamp[tz]`, `time`, `uuid`, `json[b]`
//! and numeric parameters when it parses. For another type write the cast:
//! `CAST(CAST(?1 AS TEXT) AS inet)`.
//!
//! # Transactions
//!
//! `transaction` and `execute_script` run in one transaction (the script
//! split on `;` outside quotes, so an error names the failing statement).
//! A statement whose parameter must be declared (see Values) fails to
//! prepare, and that aborts a transaction: the transaction is then rolled
//! back and run again with that statement under a savepoint.
//! A transaction, or a lone `execute`, that PostgreSQL aborts to break a
//! deadlock or a serialization conflict (SQLSTATE `40P01`, `40001`) was not
//! applied at all and is run again, up to 5 times. A cached statement whose
//! result columns changed under it (`SELECT *` after `ALTER TABLE`) is
//! prepared again.
//!
//! # Values
//!
//! | PostgreSQL                                          | [`SqlValue`] |
//! |-----------------------------------------------------|--------------|
//! | `int2`, `int4`, `int8`, `oid`; `bool` (as 0 / 1)     | `Integer`    |
//! | `float4`, `float8`                                  | `Real`       |
//! | `numeric` with scale 0 that fits 64 bits (`SUM(int8)`) | `Integer` |
//! | any other `numeric` (nearest `f64`)                 | `Real`       |
//! | `text`, `varchar`, `char`, `name`, enums, `citext`, `json`, `jsonb`, `xml` | `Text` |
//! | `uuid` (hyphenated), `date` (`2026-12-03`), `time`, `timestamp` (`2026-12-03 08:05:07.5`), `timestamptz` (in UTC, `+00`) | `Text` |
//! | `bytea`                                             | `Blob`       |
//!
//! Other types (arrays, intervals, ranges, ...) are refused with a hint to
//! cast them to text in the query. A parameter whose type PostgreSQL cannot
//! infer (`WHERE ?1 IS NULL OR name = ?1`) is declared from the value
//! first given for it on that connection (`NULL` and text as `text`,
//! integers `int8`, reals `float8`, blobs `bytea`).
//!
//! # Portable SQL
//!
//! The same guest SQL runs on SQLite (embedded), PostgreSQL and MariaDB /
//! MySQL when it keeps to (see `tests/sql_conformance.rs`, the contract):
//!
//! - types `INTEGER`/`BIGINT`, `DOUBLE PRECISION`, `TEXT`, and `VARCHAR(n)`
//!   for text that is a key or indexed (MySQL cannot index `TEXT`); blobs
//!   have no common spelling (`BLOB` / `BYTEA` / `LONGBLOB`);
//! - `"double quotes"` for identifiers, and quoting words MySQL reserves
//!   (`"rows"`, `"key"`, `"order"`, ...);
//! - no `INSERT OR REPLACE` / `ON CONFLICT` / `ON DUPLICATE KEY` (there is
//!   no upsert common to all three: delete then insert in one
//!   transaction), no `AUTOINCREMENT` / `SERIAL` / `AUTO_INCREMENT`;
//! - nothing from SQLite's catalogue or functions: `sqlite_master`,
//!   `rowid`, `changes()`, `typeof()`, `json_each`, `strftime` (pass times
//!   as parameters instead);
//! - DDL outside transactions that must roll back (MySQL commits it).
//!
//! [`schema_name`]: super::schema_name

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions,
    PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef, Postgres,
};
use sqlx::{Arguments, Column, Executor, Row, Statement, TypeInfo, ValueRef};
use tokio::sync::OnceCell;

use crate::sql::{Sql, SqlProvider, SqlRows, SqlStatement, SqlValue};
use crate::sql_engine::{self, Dialect};
use crate::{BackendError, Result};

const BACKEND: &str = "postgres sql";

/// Connections each resource's pool keeps open at most.
pub const MAX_CONNECTIONS_PER_DATABASE: u32 = 8;

/// Longest a statement may run (PostgreSQL's `statement_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the SQL databases of one app on PostgreSQL: one schema per
/// resource (see the [module docs](self)).
pub struct PgSql {
    options: PgConnectOptions,
    admin: PgPool,
    namespace: String,
    fixed_schema: Option<String>,
    open: Mutex<HashMap<String, Arc<PgDatabase>>>,
}

impl PgSql {
    /// Connects to `url` (`postgres://user@host:port/db[?schema=name]`) for
    /// the app `namespace`, checking that the server answers.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let (url, fixed_schema) = take_query_param(url, "schema");
        if let Some(schema) = &fixed_schema
            && (schema.is_empty()
                || !schema
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_'))
        {
            return Err(BackendError::engine(
                BACKEND,
                format!("schema `{schema}` in the URL must be a plain name (letters, digits, `_`)"),
            ));
        }
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| BackendError::engine(BACKEND, format!("bad URL {url}: {e}")))?;
        let admin = super::connect(&url).await?;
        Ok(Self {
            options,
            admin,
            namespace: namespace.to_string(),
            fixed_schema,
            open: Mutex::default(),
        })
    }

    /// The schema holding resource `name`.
    pub fn schema(&self, name: &str) -> String {
        match &self.fixed_schema {
            Some(schema) => schema.clone(),
            None => sql_engine::identifier(&[&super::schema_name(&self.namespace), name]),
        }
    }

    /// The database called `name` (the concrete type behind
    /// [`SqlProvider::open`]); its schema is created on first use.
    pub fn database(&self, name: &str) -> Result<Arc<PgDatabase>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackendError::engine(
                BACKEND,
                "databases must be opened inside a tokio runtime",
            ));
        }
        let schema = self.schema(name);
        let timeout = format!("{}s", STATEMENT_TIMEOUT.as_secs());
        let options = self.options.clone().options([
            ("search_path", schema.as_str()),
            ("statement_timeout", &timeout),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS_PER_DATABASE)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options);
        let db = Arc::new(PgDatabase {
            pool,
            schema,
            create: self.fixed_schema.is_none(),
            ready: OnceCell::new(),
        });
        open.insert(name.to_string(), db.clone());
        Ok(db)
    }

    /// Drops resource `name`'s schema and everything in it (for removing an
    /// app, and tests). Refused when the URL named a fixed schema.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        if self.fixed_schema.is_some() {
            return Err(BackendError::engine(
                BACKEND,
                "the URL names a fixed schema; it is not dropped",
            ));
        }
        let db = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(db) = db {
            db.pool.close().await;
        }
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema(name));
        self.admin
            .execute(sql.as_str())
            .await
            .map(|_| ())
            .map_err(|e| sql_engine::failed(BACKEND, &sql, sql_engine::reason(&e)))
    }

    /// The pool used for administration (schema set-up), with no
    /// `search_path` of its own.
    pub fn admin_pool(&self) -> &PgPool {
        &self.admin
    }
}

impl SqlProvider for PgSql {
    fn open(&self, name: &str) -> Result<Arc<dyn Sql>> {
        Ok(self.database(name)?)
    }
}

/// Removes `key=value` from the query of `url`; returns the URL without it
/// and the value.
pub(crate) fn take_query_param(url: &str, key: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == key => {
                value = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, value)
}

/// One SQL database: a schema and a pool whose connections search it.
pub struct PgDatabase {
    pool: PgPool,
    schema: String,
    create: bool,
    ready: OnceCell<()>,
}

impl PgDatabase {
    /// The schema this database lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool (connections have `search_path` set to [`Self::schema`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the schema once.
    async fn ready(&self) -> Result<()> {
        if !self.create {
            return Ok(());
        }
        self.ready
            .get_or_try_init(|| async {
                let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema);
                match self.pool.execute(sql.as_str()).await {
                    Ok(_) => Ok(()),
                    // Two processes creating it at once: one loses the race.
                    Err(sqlx::Error::Database(e))
                        if matches!(e.code().as_deref(), Some("23505" | "42P06")) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(sql_engine::failed(BACKEND, &sql, sql_engine::reason(&e))),
                }
            })
            .await
            .map(|_| ())
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        self.ready().await?;
        self.pool
            .acquire()
            .await
            .map_err(|e| BackendError::engine(BACKEND, format!("cannot connect: {e}")))
    }
}

/// What [`prepare`] may do when PostgreSQL cannot type a parameter (or
/// deduces two types for it) and the statement must be prepared again with
/// that parameter declared. A failed prepare aborts a transaction, so
/// inside one that needs a savepoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Untyped {
    /// Outside a transaction: prepare again.
    Retry,
    /// Inside a transaction, under `SAVEPOINT gust_declare`: roll back to
    /// it, then prepare again.
    RollBackToSavepoint,
    /// Inside a transaction without a savepoint: fail with [`UNTYPED`]
    /// (the caller runs the transaction again with a savepoint there).
    Fail,
}

/// The error of [`Untyped::Fail`].
const UNTYPED: &str = "a parameter needs its type declared; retry under a savepoint";

/// The savepoint of [`Untyped::RollBackToSavepoint`].
const DECLARE_SAVEPOINT: &str = "gust_declare";

fn is_untyped(err: &BackendError) -> bool {
    err.to_string().contains(UNTYPED)
}

/// Prepares `sql` (cached per connection) and binds `params` in the types
/// PostgreSQL inferred for them.
async fn prepare(
    conn: &mut PgConnection,
    sql: &str,
    params: &[SqlValue],
    untyped: Untyped,
) -> Result<(String, PgArguments, Vec<String>)> {
    let translated = sql_engine::translate(sql, Dialect::Postgres)
        .map_err(|e| sql_engine::failed(BACKEND, sql, e))?;
    // PostgreSQL infers each parameter's type from where it stands; where
    // nothing tells (`?1 IS NULL`), declare it from the value given.
    let mut declared: Vec<PgTypeInfo> = Vec::new();
    let stmt = loop {
        match conn.prepare_with(&translated.sql, &declared).await {
            Ok(stmt) => break stmt,
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P18" | "42P08"))
                    && declared.len() < params.len() =>
            {
                let n = indeterminate_parameter(e.message()).unwrap_or(declared.len() + 1);
                if n <= declared.len() || n > params.len() {
                    return Err(sql_engine::failed(BACKEND, sql, e.message()));
                }
                match untyped {
                    Untyped::Retry => {}
                    Untyped::Fail => return Err(sql_engine::failed(BACKEND, sql, UNTYPED)),
                    Untyped::RollBackToSavepoint => {
                        let rollback = format!("ROLLBACK TO SAVEPOINT {DECLARE_SAVEPOINT}");
                        (&mut *conn).execute(rollback.as_str()).await.map_err(|e| {
                            sql_engine::failed(BACKEND, &rollback, sql_engine::reason(&e))
                        })?;
                    }
                }
                declared.resize(n - 1, PgTypeInfo::with_oid(Oid(0)));
                declared.push(declared_type(&params[n - 1]));
            }
            Err(e) => return Err(sql_engine::failed(BACKEND, sql, sql_engine::reason(&e))),
        }
    };
    let types: Vec<PgTypeInfo> = match stmt.parameters() {
        Some(sqlx::Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    sql_engine::check_count(types.len(), params.len())
        .map_err(|e| sql_engine::failed(BACKEND, sql, e))?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut args = PgArguments::default();
    for (i, (value, ty)) in params.iter().zip(&types).enumerate() {
        let bytes = encode(value, ty)
            .map_err(|e| sql_engine::failed(BACKEND, sql, format!("parameter {}: {e}", i + 1)))?;
        args.add(Param {
            ty: ty.clone(),
            bytes,
        })
        .map_err(|e| sql_engine::failed(BACKEND, sql, e))?;
    }
    Ok((translated.sql, args, columns))
}

/// `N` of PostgreSQL's "could not determine data type of parameter $N".
fn indeterminate_parameter(message: &str) -> Option<usize> {
    message.rsplit('$').next()?.trim().parse().ok()
}

/// The type a parameter PostgreSQL cannot infer is declared as.
fn declared_type(value: &SqlValue) -> PgTypeInfo {
    PgTypeInfo::with_oid(Oid(match value {
        SqlValue::Integer(_) => oid::INT8,
        SqlValue::Real(_) => oid::FLOAT8,
        SqlValue::Null | SqlValue::Text(_) => oid::TEXT,
        SqlValue::Blob(_) => oid::BYTEA,
    }))
}

async fn run_query(conn: &mut PgConnection, sql: &str, params: &[SqlValue]) -> Result<SqlRows> {
    use futures::TryStreamExt;
    let (pg_sql, args, columns) = prepare(conn, sql, params, Untyped::Retry).await?;
    let mut stream = sqlx::query_with(&pg_sql, args).fetch(&mut *conn);
    let mut rows = Vec::new();
    let mut bytes = 0;
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(|e| sql_engine::failed(BACKEND, sql, sql_engine::reason(&e)))?
    {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            let raw = row
                .try_get_raw(i)
                .map_err(|e| sql_engine::failed(BACKEND, sql, e))?;
            let v = decode(raw)
                .map_err(|e| sql_engine::failed(BACKEND, sql, format!("column `{column}`: {e}")))?;
            bytes += sql_engine::size(&v);
            values.push(v);
        }
        if bytes > sql_engine::MAX_RESULT_BYTES {
            return Err(sql_engine::too_large(BACKEND, sql));
        }
        rows.push(values);
    }
    Ok(SqlRows { columns, rows })
}

async fn run_execute(
    conn: &mut PgConnection,
    sql: &str,
    params: &[SqlValue],
    untyped: Untyped,
) -> Result<u64> {
    let (pg_sql, args, _) = prepare(conn, sql, params, untyped).await?;
    sqlx::query_with(&pg_sql, args)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| sql_engine::failed(BACKEND, sql, sql_engine::reason(&e)))
}

#[async_trait]
impl Sql for PgDatabase {
    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<SqlRows> {
        let mut conn = self.acquire().await?;
        match run_query(&mut conn, sql, &params).await {
            Err(e) if is_stale_plan(&e) => {
                forget_statements(&mut conn).await?;
                run_query(&mut conn, sql, &params).await
            }
            result => result,
        }
    }

    async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<u64> {
        // A statement on its own is a transaction of its own: a deadlock
        // victim was rolled back whole and can run again.
        sql_engine::retry_deadlocks(|| async {
            let mut conn = self.acquire().await?;
            match run_execute(&mut conn, sql, &params, Untyped::Retry).await {
                Err(e) if is_stale_plan(&e) => {
                    forget_statements(&mut conn).await?;
                    run_execute(&mut conn, sql, &params, Untyped::Retry).await
                }
                result => result,
            }
        })
        .await
    }

    async fn transaction(&self, statements: Vec<SqlStatement>) -> Result<Vec<u64>> {
        sql_engine::retry_deadlocks(|| async {
            let mut conn = self.acquire().await?;
            // Statements to run under a savepoint, found by running the
            // transaction (rolled back, so nothing of it applied): each
            // round adds one, so this ends.
            let mut guarded = Vec::new();
            loop {
                let outcome = match run_transaction(&mut conn, &statements, &guarded).await {
                    Err(e) if is_stale_plan(&e) => {
                        forget_statements(&mut conn).await?;
                        run_transaction(&mut conn, &statements, &guarded).await
                    }
                    result => result,
                }?;
                match outcome {
                    Ok(changed) => return Ok(changed),
                    Err(i) => guarded.push(i),
                }
            }
        })
        .await
    }

    async fn execute_script(&self, sql: &str) -> Result<()> {
        sql_engine::retry_deadlocks(|| async {
            let mut conn = self.acquire().await?;
            run_script(&mut conn, sql).await
        })
        .await
    }
}

/// Whether PostgreSQL refused a cached prepared statement because a schema
/// change altered its result columns (`ALTER TABLE` after a `SELECT *` on
/// the same connection). Preparing it again fixes that.
fn is_stale_plan(err: &BackendError) -> bool {
    err.to_string()
        .contains("cached plan must not change result type")
}

/// Drops the connection's prepared statements.
async fn forget_statements(conn: &mut PgConnection) -> Result<()> {
    sqlx::Connection::clear_cached_statements(conn)
        .await
        .map_err(|e| BackendError::engine(BACKEND, format!("cannot clear statements: {e}")))
}

/// Runs `statements` in one transaction on `conn`, those at the indices
/// `guarded` each under a savepoint, so that preparing it may fail and be
/// retried with a parameter's type declared. `Ok(Err(i))`: statement `i`
/// needs that too (the transaction was rolled back; run it again with `i`
/// guarded). Savepoints only where needed: they cost round trips.
async fn run_transaction(
    conn: &mut PgConnection,
    statements: &[SqlStatement],
    guarded: &[usize],
) -> Result<std::result::Result<Vec<u64>, usize>> {
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .map_err(|e| sql_engine::failed(BACKEND, "BEGIN", sql_engine::reason(&e)))?;
    let mut changed = Vec::with_capacity(statements.len());
    for (i, s) in statements.iter().enumerate() {
        if !guarded.contains(&i) {
            match run_execute(&mut tx, &s.sql, &s.params, Untyped::Fail).await {
                Err(e) if is_untyped(&e) => return Ok(Err(i)),
                result => changed.push(result?),
            }
            continue;
        }
        let savepoint = format!("SAVEPOINT {DECLARE_SAVEPOINT}");
        let release = format!("RELEASE SAVEPOINT {DECLARE_SAVEPOINT}");
        (&mut *tx)
            .execute(savepoint.as_str())
            .await
            .map_err(|e| sql_engine::failed(BACKEND, &savepoint, sql_engine::reason(&e)))?;
        changed.push(run_execute(&mut tx, &s.sql, &s.params, Untyped::RollBackToSavepoint).await?);
        (&mut *tx)
            .execute(release.as_str())
            .await
            .map_err(|e| sql_engine::failed(BACKEND, &release, sql_engine::reason(&e)))?;
    }
    tx.commit()
        .await
        .map_err(|e| sql_engine::failed(BACKEND, "COMMIT", sql_engine::reason(&e)))?;
    Ok(Ok(changed))
}

/// Runs a `;`-separated script in one transaction on `conn`.
async fn run_script(conn: &mut PgConnection, sql: &str) -> Result<()> {
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .map_err(|e| sql_engine::failed(BACKEND, "BEGIN", sql_engine::reason(&e)))?;
    for statement in sql_engine::split_statements(sql, Dialect::Postgres) {
        // The simple protocol: no preparing, nothing cached.
        (&mut *tx)
            .execute(statement)
            .await
            .map_err(|e| sql_engine::failed(BACKEND, statement, sql_engine::reason(&e)))?;
    }
    tx.commit()
        .await
        .map_err(|e| sql_engine::failed(BACKEND, "COMMIT", sql_engine::reason(&e)))
}

/// A parameter already in PostgreSQL's binary format for its type.
struct Param {
    ty: PgTypeInfo,
    bytes: Option<Vec<u8>>,
}

impl sqlx::Type<Postgres> for Param {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(oid::UNKNOWN))
    }
}

impl sqlx::Encode<'_, Postgres> for Param {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match &self.bytes {
            Some(bytes) => {
                buf.extend_from_slice(bytes);
                Ok(sqlx::encode::IsNull::No)
            }
            None => Ok(sqlx::encode::IsNull::Yes),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.ty.clone())
    }
}

/// Type ids of PostgreSQL's built-in types (`pg_type.oid`).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// What a type is, for converting values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int(usize),
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Jsonb,
    Bytea,
    Uuid,
    Date,
    Time,
    Timestamp,
    Timestamptz,
}

fn kind(ty: &PgTypeInfo) -> Option<Kind> {
    match ty.kind() {
        PgTypeKind::Domain(base) => return kind(base),
        PgTypeKind::Enum(_) => return Some(Kind::Text),
        _ => {}
    }
    Some(match ty.oid()?.0 {
        oid::BOOL => Kind::Bool,
        oid::INT2 => Kind::Int(2),
        oid::INT4 => Kind::Int(4),
        oid::INT8 => Kind::Int(8),
        oid::OID => Kind::Oid,
        oid::FLOAT4 => Kind::Float4,
        oid::FLOAT8 => Kind::Float8,
        oid::NUMERIC => Kind::Numeric,
        oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME
        | oid::JSON
        | oid::XML
        | oid::UNKNOWN => Kind::Text,
        oid::JSONB => Kind::Jsonb,
        oid::BYTEA => Kind::Bytea,
        oid::UUID => Kind::Uuid,
        oid::DATE => Kind::Date,
        oid::TIME => Kind::Time,
        oid::TIMESTAMP => Kind::Timestamp,
        oid::TIMESTAMPTZ => Kind::Timestamptz,
        _ if ty.name() == "citext" => Kind::Text,
        _ => return None,
    })
}

/// `value` in PostgreSQL's binary format for `ty` (`None`: `NULL`).
fn encode(value: &SqlValue, ty: &PgTypeInfo) -> Result<Option<Vec<u8>>, String> {
    if *value == SqlValue::Null {
        return Ok(None);
    }
    let name = ty.name();
    let Some(kind) = kind(ty) else {
        return Err(format!(
            "PostgreSQL expects type `{name}` here, which the sql binding cannot send; \
             cast in the query, e.g. CAST(CAST(?1 AS TEXT) AS {name})"
        ));
    };
    let mismatch = || format!("{} cannot be sent as `{name}`", describe(value));
    let integer = || -> Result<i64, String> {
        match value {
            SqlValue::Integer(i) => Ok(*i),
            SqlValue::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
            SqlValue::Text(s) => s.trim().parse().map_err(|_| mismatch()),
            _ => Err(mismatch()),
        }
    };
    let float = || -> Result<f64, String> {
        match value {
            SqlValue::Integer(i) => Ok(*i as f64),
            SqlValue::Real(f) => Ok(*f),
            SqlValue::Text(s) => s.trim().parse().map_err(|_| mismatch()),
            _ => Err(mismatch()),
        }
    };
    let text = || -> Result<String, String> {
        match value {
            SqlValue::Integer(i) => Ok(i.to_string()),
            SqlValue::Real(f) => Ok(f.to_string()),
            SqlValue::Text(s) => Ok(s.clone()),
            _ => Err(mismatch()),
        }
    };
    let out_of_range = |i: i64| format!("{i} is out of range for `{name}`");
    Ok(Some(match kind {
        Kind::Bool => match value {
            SqlValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "t" | "true" | "1" | "yes" | "on" => vec![1],
                "f" | "false" | "0" | "no" | "off" => vec![0],
                _ => return Err(mismatch()),
            },
            _ => vec![u8::from(integer()? != 0)],
        },
        Kind::Int(2) => {
            let i = integer()?;
            i16::try_from(i)
                .map_err(|_| out_of_range(i))?
                .to_be_bytes()
                .to_vec()
        }
        Kind::Int(4) => {
            let i = integer()?;
            i32::try_from(i)
                .map_err(|_| out_of_range(i))?
                .to_be_bytes()
                .to_vec()
        }
        Kind::Int(_) => integer()?.to_be_bytes().to_vec(),
        Kind::Oid => {
            let i = integer()?;
            u32::try_from(i)
                .map_err(|_| out_of_range(i))?
                .to_be_bytes()
                .to_vec()
        }
        Kind::Float4 => (float()? as f32).to_be_bytes().to_vec(),
        Kind::Float8 => float()?.to_be_bytes().to_vec(),
        Kind::Numeric => match value {
            SqlValue::Real(f) if f.is_nan() => numeric_nan(),
            SqlValue::Real(f) if f.is_infinite() => return Err(mismatch()),
            _ => encode_numeric(&text()?).ok_or_else(mismatch)?,
        },
        Kind::Text => text()?.into_bytes(),
        Kind::Jsonb => {
            let mut out = vec![1];
            out.extend(text()?.into_bytes());
            out
        }
        Kind::Bytea => match value {
            SqlValue::Blob(b) => b.clone(),
            SqlValue::Text(s) => s.as_bytes().to_vec(),
            _ => return Err(mismatch()),
        },
        Kind::Uuid => {
            let SqlValue::Text(s) = value else {
                return Err(mismatch());
            };
            parse_uuid(s).ok_or_else(mismatch)?.to_vec()
        }
        Kind::Date => {
            let SqlValue::Text(s) = value else {
                return Err(mismatch());
            };
            let days = sql_engine::parse_date(s).ok_or_else(mismatch)? - PG_EPOCH_DAYS;
            i32::try_from(days)
                .map_err(|_| mismatch())?
                .to_be_bytes()
                .to_vec()
        }
        Kind::Time => {
            let SqlValue::Text(s) = value else {
                return Err(mismatch());
            };
            sql_engine::parse_time(s.trim())
                .ok_or_else(mismatch)?
                .to_be_bytes()
                .to_vec()
        }
        Kind::Timestamp | Kind::Timestamptz => {
            let SqlValue::Text(s) = value else {
                return Err(mismatch());
            };
            let (micros, offset) = sql_engine::parse_timestamp(s).ok_or_else(mismatch)?;
            // `timestamp` ignores a written zone, as PostgreSQL does; a
            // `timestamptz` without one is taken as UTC.
            let utc = match (kind, offset) {
                (Kind::Timestamptz, Some(offset)) => micros - offset * 1_000_000,
                _ => micros,
            };
            (utc - PG_EPOCH_MICROS).to_be_bytes().to_vec()
        }
    }))
}

fn describe(value: &SqlValue) -> &'static str {
    match value {
        SqlValue::Null => "NULL",
        SqlValue::Integer(_) => "an integer",
        SqlValue::Real(_) => "a real",
        SqlValue::Text(_) => "this text",
        SqlValue::Blob(_) => "a blob",
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .bytes()
        .filter(|c| *c != b'-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn numeric_nan() -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    for part in [0u16, 0, 0xC000, 0] {
        out.extend(part.to_be_bytes());
    }
    out
}

/// A plain decimal (`-12.340`, no exponent) in `numeric`'s binary format:
/// `ndigits, weight, sign, dscale` and base-10000 digits.
fn encode_numeric(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.contains(['e', 'E']) {
        // An exponent: go through f64's plain rendering.
        let f: f64 = text.parse().ok()?;
        return f.is_finite().then(|| encode_numeric(&format!("{f}")))?;
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let dscale = u16::try_from(frac.len()).ok()?;
    let int = int.trim_start_matches('0');
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
        .collect();
    let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    let mut out = Vec::with_capacity(8 + groups.len() * 2);
    out.extend((groups.len() as i16).to_be_bytes());
    out.extend(weight.to_be_bytes());
    out.extend(sign.to_be_bytes());
    out.extend(dscale.to_be_bytes());
    for g in groups {
        out.extend(g.to_be_bytes());
    }
    Some(out)
}

/// `numeric`'s binary format as plain decimal text (`None` for NaN and
/// infinities, which are returned as reals).
fn numeric_text(b: &[u8]) -> Result<Result<String, f64>, String> {
    let short = || "numeric value is truncated".to_string();
    let word = |i: usize| -> Result<u16, String> {
        b.get(i * 2..i * 2 + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(short)
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0xC000 => return Ok(Err(f64::NAN)),
        0xD000 => return Ok(Err(f64::INFINITY)),
        0xF000 => return Ok(Err(f64::NEG_INFINITY)),
        _ => {}
    }
    let digit = |i: i32| -> Result<u16, String> {
        if i < 0 || i as usize >= ndigits {
            Ok(0)
        } else {
            word(4 + i as usize)
        }
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i)?;
            if i == 0 {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)?));
            i += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(Ok(out))
}

/// A column value as a [`SqlValue`].
fn decode(raw: PgValueRef<'_>) -> Result<SqlValue, String> {
    if raw.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = raw.type_info().into_owned();
    let Some(kind) = kind(&ty) else {
        return Err(format!(
            "type `{}` cannot be returned by the sql binding; cast it in the query, e.g. CAST(x AS TEXT)",
            ty.name()
        ));
    };
    let format = raw.format();
    let b = raw.as_bytes().map_err(|e| e.to_string())?;
    if format == PgValueFormat::Text {
        let s = std::str::from_utf8(b).map_err(|e| e.to_string())?;
        return Ok(match kind {
            Kind::Bool => SqlValue::Integer(i64::from(s == "t")),
            Kind::Int(_) | Kind::Oid | Kind::Numeric => sql_engine::decimal(s)?,
            Kind::Float4 | Kind::Float8 => sql_engine::decimal(s)
                .map(|v| match v {
                    SqlValue::Integer(i) => SqlValue::Real(i as f64),
                    v => v,
                })
                .or_else(|_| s.parse().map(SqlValue::Real).map_err(|_| s.to_string()))?,
            Kind::Bytea => SqlValue::Blob(b.to_vec()),
            _ => SqlValue::Text(s.to_string()),
        });
    }
    let fixed = |n: usize| -> Result<&[u8], String> {
        (b.len() == n)
            .then_some(b)
            .ok_or_else(|| format!("expected {n} bytes of `{}`, got {}", ty.name(), b.len()))
    };
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map(SqlValue::Text)
            .map_err(|e| e.to_string())
    };
    Ok(match kind {
        Kind::Bool => SqlValue::Integer(i64::from(fixed(1)?[0] != 0)),
        Kind::Int(2) => SqlValue::Integer(i16::from_be_bytes(fixed(2)?.try_into().unwrap()).into()),
        Kind::Int(4) => SqlValue::Integer(i32::from_be_bytes(fixed(4)?.try_into().unwrap()).into()),
        Kind::Int(_) => SqlValue::Integer(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        Kind::Oid => SqlValue::Integer(u32::from_be_bytes(fixed(4)?.try_into().unwrap()).into()),
        Kind::Float4 => SqlValue::Real(f32::from_be_bytes(fixed(4)?.try_into().unwrap()).into()),
        Kind::Float8 => SqlValue::Real(f64::from_be_bytes(fixed(8)?.try_into().unwrap())),
        Kind::Numeric => match numeric_text(b)? {
            Ok(text) => sql_engine::decimal(&text)?,
            Err(special) => SqlValue::Real(special),
        },
        Kind::Text => utf8(b)?,
        Kind::Jsonb => utf8(b.get(1..).unwrap_or_default())?,
        Kind::Bytea => SqlValue::Blob(b.to_vec()),
        Kind::Uuid => {
            let h: String = fixed(16)?.iter().map(|x| format!("{x:02x}")).collect();
            SqlValue::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        Kind::Date => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().unwrap());
            SqlValue::Text(match days {
                i32::MAX => "infinity".into(),
                i32::MIN => "-infinity".into(),
                _ => {
                    let (y, m, d) = sql_engine::civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
                    sql_engine::format_date(y, m, d)
                }
            })
        }
        Kind::Time => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().unwrap());
            SqlValue::Text(time_of_day(micros))
        }
        Kind::Timestamp | Kind::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().unwrap());
            let suffix = if kind == Kind::Timestamptz { "+00" } else { "" };
            SqlValue::Text(match micros {
                i64::MAX => "infinity".into(),
                i64::MIN => "-infinity".into(),
                _ => {
                    let unix = micros + PG_EPOCH_MICROS;
                    let days = unix.div_euclid(86_400_000_000);
                    let (y, m, d) = sql_engine::civil_from_days(days);
                    format!(
                        "{} {}{suffix}",
                        sql_engine::format_date(y, m, d),
                        time_of_day(unix.rem_euclid(86_400_000_000))
                    )
                }
            })
        }
    })
}

/// `HH:MM:SS[.ffffff]` of microseconds since midnight.
fn time_of_day(micros: i64) -> String {
    let secs = micros / 1_000_000;
    sql_engine::format_time(
        (secs / 3600) as u32,
        (secs / 60 % 60) as u32,
        (secs % 60) as u32,
        (micros % 1_000_000) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        numeric_text(&encode_numeric(text).unwrap())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn numerics_survive_the_binary_format() {
        assert_eq!(numeric_round_trip("0"), "0");
        assert_eq!(numeric_round_trip("12345678"), "12345678");
        assert_eq!(numeric_round_trip("-1.50"), "-1.50");
        assert_eq!(numeric_round_trip("0.00012"), "0.00012");
        assert_eq!(numeric_round_trip("10000.0001"), "10000.0001");
        assert_eq!(numeric_round_trip("1e3"), "1000");
        assert!(encode_numeric("12a").is_none());
        assert!(encode_numeric(".").is_none());
    }

    #[test]
    fn schema_parameter_is_taken_out_of_the_url() {
        assert_eq!(
            take_query_param("postgres://h/db?schema=public&sslmode=disable", "schema"),
            (
                "postgres://h/db?sslmode=disable".into(),
                Some("public".into())
            )
        );
        assert_eq!(
            take_query_param("postgres://h/db?schema=x", "schema"),
            ("postgres://h/db".into(), Some("x".into()))
        );
        assert_eq!(
            take_query_param("postgres://h/db", "schema"),
            ("postgres://h/db".into(), None)
        );
    }

    #[test]
    fn uuids_parse_with_or_without_hyphens() {
        let a = parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(parse_uuid("{A0EEBC999C0B4EF8BB6D6BB9BD380A11}").unwrap(), a);
        assert!(parse_uuid("nope").is_none());
    }
}
