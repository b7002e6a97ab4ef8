//! The `mysql` backend: SQL databases (`gust:function/sql`) on MariaDB or
//! MySQL (through sqlx).
//!
//! # Names
//!
//! [`MySqlSql::connect`]`(url, namespace)`:
//!
//! - a URL without a database (`mysql://root@127.0.0.1:3306`) gives each
//!   resource `name` its own database, `gust_<namespace>_<name>` (anything
//!   but ASCII letters and digits becomes `_`, lower-cased; names over 63
//!   bytes are cut and end in a hash), created on first use with
//!   `CREATE DATABASE IF NOT EXISTS ... CHARACTER SET utf8mb4`;
//! - a URL naming a database (`mysql://root@127.0.0.1:3306/legacy`) makes
//!   every resource use that database as is: for tables that already exist
//!   (a company database a scheduled function cleans). It must exist; it
//!   is never created or dropped.
//!
//! (The PostgreSQL binding follows the same idea: schemas per resource in
//! the URL's database, or the URL's `?schema=` as is.)
//!
//! Each resource has its own small pool; its connections start in the
//! resource's database, with sqlx's session settings (`utf8mb4`,
//! `time_zone = '+00:00'`, `PIPES_AS_CONCAT`) and, so that SQL written for
//! SQLite and PostgreSQL means the same here, `ANSI_QUOTES` (`"name"` is an
//! identifier) and `NO_BACKSLASH_ESCAPES` (`'a\b'` is three characters); a
//! statement may run for [`STATEMENT_TIMEOUT_SECS`]. What SQL runs on every
//! engine: see [`crate::postgres::sql`] ("Portable SQL").
//!
//! # SQL text
//!
//! Guests write SQLite-style placeholders: `?`, `?1`, `?2`. They become
//! MySQL's positional `?`, with the values reordered (and repeated) to
//! match; a `?` inside a string, quoted identifier or comment stays.
//! Statements the prepared-statement protocol refuses (error 1295) run as
//! plain text when they have no parameters.
//!
//! # Values
//!
//! | MariaDB / MySQL                                              | [`SqlValue`] |
//! |--------------------------------------------------------------|--------------|
//! | `TINYINT` (`BOOLEAN`), `SMALLINT`, `MEDIUMINT`, `INT`, `BIGINT`, `YEAR`, `BIT` | `Integer` |
//! | `BIGINT UNSIGNED` above 2⁶³-1                                | `Real`       |
//! | `FLOAT`, `DOUBLE`                                            | `Real`       |
//! | `DECIMAL` with no fractional digits that fits 64 bits (`SUM(int)`) | `Integer` |
//! | any other `DECIMAL` (nearest `f64`)                          | `Real`       |
//! | `CHAR`, `VARCHAR`, `TEXT`s, `ENUM`, `SET`, `JSON`            | `Text`       |
//! | `DATE` (`2026-12-03`), `DATETIME`/`TIMESTAMP` (`2026-12-03 08:05:07.5`), `TIME` | `Text` |
//! | `BINARY`, `VARBINARY`, `BLOB`s, `GEOMETRY`                   | `Blob`       |
//!
//! A text column with a binary (`_bin`) collation is reported by the
//! server like `VARBINARY` and comes back as a `Blob`; that includes
//! MariaDB's `JSON` (a `LONGTEXT` with `utf8mb4_bin`). Select it as
//! `CAST(j AS CHAR)` to get text. Parameters are sent
//! as they are (`BIGINT`, `DOUBLE`, text, bytes, `NULL`); the server
//! converts them to the column's type.
//!
//! # Limits
//!
//! A transaction or lone `execute` that InnoDB aborts to break a deadlock
//! (SQLSTATE `40001`) is run again, up to 5 times (nothing of it was
//! applied).
//!
//! Column names of a result come from the rows; a query that returns no
//! rows reports the names cached when its text was first prepared on that
//! connection, which after an `ALTER TABLE` can be the old ones.
//!
//! MySQL commits implicitly before and after DDL (`CREATE TABLE`, ...), so a
//! script or transaction containing DDL is not all-or-nothing here (it is on
//! SQLite and PostgreSQL).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions,
    MySqlRow,
};
use sqlx::{Arguments, Column, Executor, Row, Statement, TypeInfo, ValueRef};
use tokio::sync::OnceCell;

use crate::sql::{Sql, SqlProvider, SqlRows, SqlStatement, SqlValue};
use crate::sql_engine::{self, Dialect};
use crate::{BackendError, Result};

const BACKEND: &str = "mysql sql";

/// Connections each resource's pool keeps open at most.
pub const MAX_CONNECTIONS_PER_DATABASE: u32 = 8;

/// Session settings added to every connection (see the module docs).
const SESSION_SQL_MODE: &str =
    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES')";

/// Longest a statement may run, in seconds (MariaDB's
/// `max_statement_time`; on MySQL `max_execution_time`, SELECT only).
pub const STATEMENT_TIMEOUT_SECS: u32 = 30;

/// MySQL's "not supported in the prepared statement protocol" error.
const ER_UNSUPPORTED_PS: &str = "1295";

/// Opens the SQL databases of one app on MariaDB / MySQL: one database
/// per resource, or the URL's database for all (see the [module
/// docs](self)).
pub struct MySqlSql {
    options: MySqlConnectOptions,
    admin: MySqlPool,
    namespace: String,
    fixed_database: Option<String>,
    open: Mutex<HashMap<String, Arc<MySqlDatabase>>>,
}

impl MySqlSql {
    /// Connects to `url` (`mysql://user:password@host:port[/database]`)
    /// for the app `namespace`, checking that the server answers.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| BackendError::engine(BACKEND, format!("bad URL {url}: {e}")))?;
        let fixed_database = options
            .get_database()
            .filter(|db| !db.is_empty())
            .map(String::from);
        let admin = MySqlPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                BackendError::engine(
                    BACKEND,
                    format!("cannot connect to {}: {e}", crate::services::redact(url)),
                )
            })?;
        Ok(Self {
            options,
            admin,
            namespace: namespace.to_string(),
            fixed_database,
            open: Mutex::default(),
        })
    }

    /// The database holding resource `name`.
    pub fn database_name(&self, name: &str) -> String {
        match &self.fixed_database {
            Some(db) => db.clone(),
            None => sql_engine::identifier(&["gust", &self.namespace, name]),
        }
    }

    /// The database called `name` (the concrete type behind
    /// [`SqlProvider::open`]), created on first use.
    pub fn database(&self, name: &str) -> Result<Arc<MySqlDatabase>> {
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
        let database = self.database_name(name);
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS_PER_DATABASE)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(300))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SESSION_SQL_MODE).await?;
                    // MariaDB's statement time limit, else MySQL's (which
                    // covers only SELECT).
                    let secs = STATEMENT_TIMEOUT_SECS;
                    let mariadb = format!("SET SESSION max_statement_time = {secs}");
                    if conn.execute(mariadb.as_str()).await.is_err() {
                        let mysql = format!("SET SESSION max_execution_time = {}", secs * 1000);
                        conn.execute(mysql.as_str()).await.ok();
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(self.options.clone().database(&database));
        let db = Arc::new(MySqlDatabase {
            pool,
            create: self.fixed_database.is_none().then(|| self.admin.clone()),
            database,
            ready: OnceCell::new(),
        });
        open.insert(name.to_string(), db.clone());
        Ok(db)
    }

    /// Drops resource `name`'s database and everything in it (for removing
    /// an app, and tests). Refused when the URL named the database.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        if self.fixed_database.is_some() {
            return Err(BackendError::engine(
                BACKEND,
                "the URL names the database; it is not dropped",
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
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.database_name(name));
        self.admin
            .execute(sql.as_str())
            .await
            .map(|_| ())
            .map_err(|e| sql_engine::failed(BACKEND, &sql, sql_engine::reason(&e)))
    }

    /// The pool used for administration (creating databases).
    pub fn admin_pool(&self) -> &MySqlPool {
        &self.admin
    }
}

impl SqlProvider for MySqlSql {
    fn open(&self, name: &str) -> Result<Arc<dyn Sql>> {
        Ok(self.database(name)?)
    }
}

/// One SQL database: a MariaDB / MySQL database and a pool using it.
pub struct MySqlDatabase {
    pool: MySqlPool,
    database: String,
    /// The admin pool, when the database is ours to create.
    create: Option<MySqlPool>,
    ready: OnceCell<()>,
}

impl MySqlDatabase {
    /// The database's name on the server.
    pub fn name(&self) -> &str {
        &self.database
    }

    /// The pool (connections start in [`Self::name`]).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<MySql>> {
        if let Some(admin) = &self.create {
            self.ready
                .get_or_try_init(|| async {
                    let sql = format!(
                        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4",
                        self.database
                    );
                    admin
                        .execute(sql.as_str())
                        .await
                        .map(|_| ())
                        .map_err(|e| sql_engine::failed(BACKEND, &sql, sql_engine::reason(&e)))
                })
                .await?;
        }
        self.pool.acquire().await.map_err(|e| {
            BackendError::engine(
                BACKEND,
                format!(
                    "cannot connect to database `{}`: {}",
                    self.database,
                    sql_engine::reason(&e)
                ),
            )
        })
    }
}

/// A statement ready to run: MySQL text, the values in placeholder order.
struct Prepared {
    sql: String,
    args: MySqlArguments,
    columns: Vec<String>,
    /// The server refused to prepare it; it runs as plain text.
    plain: bool,
}

async fn prepare(conn: &mut MySqlConnection, sql: &str, params: &[SqlValue]) -> Result<Prepared> {
    let fail = |e: String| sql_engine::failed(BACKEND, sql, e);
    let t = sql_engine::translate(sql, Dialect::MySql).map_err(fail)?;
    sql_engine::check_count(t.count, params.len()).map_err(fail)?;
    let (columns, plain) = match conn.prepare(&t.sql).await {
        Ok(stmt) => (
            stmt.columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            false,
        ),
        Err(sqlx::Error::Database(e))
            if e.code().as_deref() == Some(ER_UNSUPPORTED_PS) && params.is_empty() =>
        {
            (Vec::new(), true)
        }
        Err(e) => return Err(fail(sql_engine::reason(&e))),
    };
    let mut args = MySqlArguments::default();
    for &i in &t.order {
        let added = match &params[i] {
            SqlValue::Null => args.add(None::<i64>),
            SqlValue::Integer(v) => args.add(*v),
            SqlValue::Real(v) => args.add(*v),
            SqlValue::Text(v) => args.add(v.as_str()),
            SqlValue::Blob(v) => args.add(v.as_slice()),
        };
        added.map_err(|e| fail(e.to_string()))?;
    }
    Ok(Prepared {
        sql: t.sql,
        args,
        columns,
        plain,
    })
}

async fn run_query(conn: &mut MySqlConnection, sql: &str, params: &[SqlValue]) -> Result<SqlRows> {
    use futures::TryStreamExt;
    let p = prepare(conn, sql, params).await?;
    let fail = |e: sqlx::Error| sql_engine::failed(BACKEND, sql, sql_engine::reason(&e));
    let mut stream = if p.plain {
        conn.fetch(p.sql.as_str())
    } else {
        sqlx::query_with(&p.sql, p.args).fetch(&mut *conn)
    };
    let mut columns = p.columns;
    let mut rows = Vec::new();
    let mut bytes = 0;
    while let Some(row) = stream.try_next().await.map_err(fail)? {
        if rows.is_empty() {
            // The names the server sent with this result: after a schema
            // change they can differ from those cached when the statement
            // was prepared.
            columns = row.columns().iter().map(|c| c.name().to_string()).collect();
        }
        let values = decode_row(&row, !p.plain).map_err(|e| sql_engine::failed(BACKEND, sql, e))?;
        bytes += values.iter().map(sql_engine::size).sum::<usize>();
        if bytes > sql_engine::MAX_RESULT_BYTES {
            return Err(sql_engine::too_large(BACKEND, sql));
        }
        rows.push(values);
    }
    Ok(SqlRows { columns, rows })
}

async fn run_execute(conn: &mut MySqlConnection, sql: &str, params: &[SqlValue]) -> Result<u64> {
    let p = prepare(conn, sql, params).await?;
    let done = if p.plain {
        conn.execute(p.sql.as_str()).await
    } else {
        sqlx::query_with(&p.sql, p.args).execute(&mut *conn).await
    };
    done.map(|r| r.rows_affected())
        .map_err(|e| sql_engine::failed(BACKEND, sql, sql_engine::reason(&e)))
}

#[async_trait]
impl Sql for MySqlDatabase {
    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<SqlRows> {
        let mut conn = self.acquire().await?;
        run_query(&mut conn, sql, &params).await
    }

    async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<u64> {
        // A statement on its own is a transaction of its own: a deadlock
        // victim was rolled back whole and can run again.
        sql_engine::retry_deadlocks(|| async {
            let mut conn = self.acquire().await?;
            run_execute(&mut conn, sql, &params).await
        })
        .await
    }

    async fn transaction(&self, statements: Vec<SqlStatement>) -> Result<Vec<u64>> {
        sql_engine::retry_deadlocks(|| self.try_transaction(&statements)).await
    }

    async fn execute_script(&self, sql: &str) -> Result<()> {
        sql_engine::retry_deadlocks(|| self.try_script(sql)).await
    }
}

impl MySqlDatabase {
    /// One attempt at [`Sql::transaction`].
    async fn try_transaction(&self, statements: &[SqlStatement]) -> Result<Vec<u64>> {
        let mut conn = self.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(|e| sql_engine::failed(BACKEND, "BEGIN", sql_engine::reason(&e)))?;
        let mut changed = Vec::with_capacity(statements.len());
        for s in statements {
            changed.push(run_execute(&mut tx, &s.sql, &s.params).await?);
        }
        tx.commit()
            .await
            .map_err(|e| sql_engine::failed(BACKEND, "COMMIT", sql_engine::reason(&e)))?;
        Ok(changed)
    }

    /// One attempt at [`Sql::execute_script`].
    async fn try_script(&self, sql: &str) -> Result<()> {
        let mut conn = self.acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(|e| sql_engine::failed(BACKEND, "BEGIN", sql_engine::reason(&e)))?;
        for statement in sql_engine::split_statements(sql, Dialect::MySql) {
            (&mut *tx)
                .execute(statement)
                .await
                .map_err(|e| sql_engine::failed(BACKEND, statement, sql_engine::reason(&e)))?;
        }
        tx.commit()
            .await
            .map_err(|e| sql_engine::failed(BACKEND, "COMMIT", sql_engine::reason(&e)))
    }
}

/// A row's values; `binary` for the prepared-statement protocol's format,
/// otherwise every value arrived as text.
fn decode_row(row: &MySqlRow, binary: bool) -> Result<Vec<SqlValue>, String> {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            out.push(SqlValue::Null);
            continue;
        }
        let ty = raw.type_info().name().to_string();
        // `&[u8]` decodes any column to its raw bytes.
        let b: &[u8] = row.try_get_unchecked(i).map_err(|e| e.to_string())?;
        let v = if binary {
            decode_binary(&ty, b)
        } else {
            decode_text(&ty, b)
        };
        out.push(v.map_err(|e| format!("column `{}` ({ty}): {e}", column.name()))?);
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

fn is_blob(ty: &str) -> bool {
    matches!(
        ty,
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY"
    )
}

fn decode_text(ty: &str, b: &[u8]) -> Result<SqlValue, String> {
    if is_blob(ty) {
        return Ok(SqlValue::Blob(b.to_vec()));
    }
    let s = utf8(b)?;
    Ok(match ty {
        "FLOAT" | "DOUBLE" => {
            SqlValue::Real(s.parse().map_err(|_| format!("`{s}` is not a number"))?)
        }
        "BIT" => bits(b),
        t if t.contains("INT") || t == "BOOLEAN" || t == "YEAR" || t == "DECIMAL" => {
            sql_engine::decimal(&s)?
        }
        _ => SqlValue::Text(s),
    })
}

/// An unsigned 64-bit value: an integer if it fits, else the nearest real.
fn unsigned(u: u64) -> SqlValue {
    i64::try_from(u).map_or(SqlValue::Real(u as f64), SqlValue::Integer)
}

fn bits(b: &[u8]) -> SqlValue {
    unsigned(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

fn decode_binary(ty: &str, b: &[u8]) -> Result<SqlValue, String> {
    if is_blob(ty) {
        return Ok(SqlValue::Blob(b.to_vec()));
    }
    let le = |n: usize| -> Result<u64, String> {
        (b.len() == n)
            .then(|| {
                b.iter()
                    .rev()
                    .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
            })
            .ok_or_else(|| format!("expected {n} bytes, got {}", b.len()))
    };
    let int = |unsigned_type: bool| -> Result<SqlValue, String> {
        let n = b.len();
        let u = le(n)?;
        if unsigned_type {
            return Ok(unsigned(u));
        }
        let shift = 64 - 8 * n as u32;
        Ok(SqlValue::Integer(((u << shift) as i64) >> shift))
    };
    Ok(match ty {
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => int(false)?,
        t if t.ends_with(" UNSIGNED") => int(true)?,
        "FLOAT" => SqlValue::Real(f32::from_bits(le(4)? as u32).into()),
        "DOUBLE" => SqlValue::Real(f64::from_bits(le(8)?)),
        "DECIMAL" => sql_engine::decimal(&utf8(b)?)?,
        "BIT" => bits(b),
        "DATE" | "DATETIME" | "TIMESTAMP" => SqlValue::Text(datetime(ty, b)?),
        "TIME" => SqlValue::Text(time(b)?),
        _ => SqlValue::Text(utf8(b)?),
    })
}

/// A binary `DATE`/`DATETIME`/`TIMESTAMP` (length byte first) as text.
fn datetime(ty: &str, b: &[u8]) -> Result<String, String> {
    let bad = || format!("malformed {ty} value");
    let len = *b.first().ok_or_else(bad)? as usize;
    let v = b.get(1..=len).ok_or_else(bad)?;
    let at = |i: usize| u32::from(v.get(i).copied().unwrap_or(0));
    let year = u32::from(u16::from_le_bytes([at(0) as u8, at(1) as u8]));
    let date = sql_engine::format_date(year.into(), at(2), at(3));
    if ty == "DATE" {
        return Ok(date);
    }
    let micros = if len >= 11 {
        u32::from_le_bytes([v[7], v[8], v[9], v[10]])
    } else {
        0
    };
    Ok(format!(
        "{date} {}",
        sql_engine::format_time(at(4), at(5), at(6), micros)
    ))
}

/// A binary `TIME` (length, sign, days, h, m, s, µs) as `[-]HH:MM:SS`.
fn time(b: &[u8]) -> Result<String, String> {
    let bad = || "malformed TIME value".to_string();
    let len = *b.first().ok_or_else(bad)? as usize;
    let v = b.get(1..=len).ok_or_else(bad)?;
    if v.is_empty() {
        return Ok("00:00:00".into());
    }
    if v.len() < 8 {
        return Err(bad());
    }
    let days = u32::from_le_bytes([v[1], v[2], v[3], v[4]]);
    let micros = if v.len() >= 12 {
        u32::from_le_bytes([v[8], v[9], v[10], v[11]])
    } else {
        0
    };
    let sign = if v[0] == 1 { "-" } else { "" };
    Ok(format!(
        "{sign}{}",
        sql_engine::format_time(
            days * 24 + u32::from(v[5]),
            v[6].into(),
            v[7].into(),
            micros
        )
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_integers_keep_their_sign() {
        assert_eq!(
            decode_binary("TINYINT", &[0xff]).unwrap(),
            SqlValue::Integer(-1)
        );
        assert_eq!(
            decode_binary("TINYINT UNSIGNED", &[0xff]).unwrap(),
            SqlValue::Integer(255)
        );
        assert_eq!(
            decode_binary("INT", &(-5i32).to_le_bytes()).unwrap(),
            SqlValue::Integer(-5)
        );
        assert_eq!(
            decode_binary("BIGINT UNSIGNED", &u64::MAX.to_le_bytes()).unwrap(),
            SqlValue::Real(u64::MAX as f64)
        );
    }

    #[test]
    fn binary_dates_and_times_become_text() {
        let dt = [11, 0xea, 0x07, 12, 3, 8, 5, 7, 0x20, 0xa1, 0x07, 0];
        assert_eq!(
            decode_binary("DATETIME", &dt).unwrap(),
            SqlValue::Text("2026-12-03 08:05:07.5".into())
        );
        assert_eq!(
            decode_binary("DATE", &[4, 0xea, 0x07, 12, 3]).unwrap(),
            SqlValue::Text("2026-12-03".into())
        );
        assert_eq!(
            decode_binary("TIME", &[8, 1, 1, 0, 0, 0, 2, 3, 4]).unwrap(),
            SqlValue::Text("-26:03:04".into())
        );
    }

    #[test]
    fn decimals_and_text_values() {
        assert_eq!(
            decode_binary("DECIMAL", b"15").unwrap(),
            SqlValue::Integer(15)
        );
        assert_eq!(
            decode_binary("DECIMAL", b"1.50").unwrap(),
            SqlValue::Real(1.5)
        );
        assert_eq!(decode_text("BIGINT", b"-3").unwrap(), SqlValue::Integer(-3));
        assert_eq!(
            decode_text("VARCHAR", b"x").unwrap(),
            SqlValue::Text("x".into())
        );
        assert_eq!(
            decode_text("BLOB", b"x").unwrap(),
            SqlValue::Blob(b"x".to_vec())
        );
    }
}
