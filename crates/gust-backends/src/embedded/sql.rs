//! Embedded SQL: one SQLite file per database under `.gust/data/sql/`.
//!
//! SQLite in WAL mode with `synchronous = FULL`, so a statement that
//! returned is on disk (a SIGKILL right after loses nothing). Each database
//! has one connection behind a mutex and every call runs on a blocking
//! thread; a statement running longer than [`STATEMENT_TIMEOUT`] is
//! interrupted, and a result larger than [`MAX_RESULT_BYTES`] is refused,
//! so a runaway query from a function cannot wedge the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::sql::{Sql, SqlProvider, SqlRows, SqlStatement, SqlValue};
use crate::{BackendError, Result};

const BACKEND: &str = "embedded sql";

/// Longest a single call may run before SQLite is told to stop.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest result (approximate bytes of all values) a query may return.
pub const MAX_RESULT_BYTES: usize = 32 << 20;

/// Opens the SQLite databases of one app.
#[derive(Clone)]
pub struct EmbeddedSql {
    dir: PathBuf,
    open: Arc<Mutex<HashMap<String, Arc<EmbeddedDatabase>>>>,
}

impl EmbeddedSql {
    /// Databases live in `dir` as `<name>.sqlite`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            open: Arc::default(),
        }
    }

    /// The file of database `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sqlite"))
    }
}

impl SqlProvider for EmbeddedSql {
    fn open(&self, name: &str) -> Result<Arc<dyn Sql>> {
        let mut open = self.open.lock().expect("sql lock");
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            BackendError::engine(
                BACKEND,
                format!("cannot create {}: {e}", self.dir.display()),
            )
        })?;
        let db = Arc::new(EmbeddedDatabase::open(&self.path(name))?);
        open.insert(name.to_string(), db.clone());
        Ok(db)
    }
}

/// One SQLite database file.
pub struct EmbeddedDatabase {
    conn: Arc<Mutex<Connection>>,
}

impl EmbeddedDatabase {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| {
            BackendError::engine(BACKEND, format!("cannot open {}: {e}", path.display()))
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| BackendError::engine(BACKEND, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| BackendError::engine(BACKEND, e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` on a blocking thread with the connection, interrupting
    /// SQLite once [`STATEMENT_TIMEOUT`] has passed.
    async fn with_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + STATEMENT_TIMEOUT;
            conn.progress_handler(10_000, Some(move || Instant::now() > deadline))
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            let result = work(&mut conn);
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            result
        })
        .await
        .map_err(|e| BackendError::engine(BACKEND, e))?
    }
}

/// A statement failed; names the statement (shortened) and SQLite's reason.
fn failed(sql: &str, err: rusqlite::Error) -> BackendError {
    let reason = match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            format!("interrupted after {}s", STATEMENT_TIMEOUT.as_secs())
        }
        _ => err.to_string(),
    };
    let short: String = sql.trim().chars().take(80).collect();
    BackendError::engine(BACKEND, format!("`{short}`: {reason}"))
}

/// Borrows a [`SqlValue`] as a SQLite parameter.
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn size(v: &SqlValue) -> usize {
    match v {
        SqlValue::Text(s) => s.len() + 8,
        SqlValue::Blob(b) => b.len() + 8,
        _ => 8,
    }
}

fn run_query(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<SqlRows> {
    let mut stmt = conn.prepare(sql).map_err(|e| failed(sql, e))?;
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let bound: Vec<Param> = params.iter().map(Param).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(bound.iter()))
        .map_err(|e| failed(sql, e))?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next().map_err(|e| failed(sql, e))? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let v = value(row.get::<_, Value>(i).map_err(|e| failed(sql, e))?);
            bytes += size(&v);
            values.push(v);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(BackendError::engine(
                BACKEND,
                format!(
                    "`{}`: result is larger than {} MiB; add a LIMIT",
                    sql.trim().chars().take(80).collect::<String>(),
                    MAX_RESULT_BYTES >> 20
                ),
            ));
        }
        out.push(values);
    }
    Ok(SqlRows { columns, rows: out })
}

fn run_execute(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<u64> {
    let bound: Vec<Param> = params.iter().map(Param).collect();
    let mut stmt = conn.prepare(sql).map_err(|e| failed(sql, e))?;
    // `raw_execute` would refuse statements that return rows (e.g.
    // `INSERT ... RETURNING`); stepping through them is fine here.
    let mut rows = stmt
        .query(rusqlite::params_from_iter(bound.iter()))
        .map_err(|e| failed(sql, e))?;
    while rows.next().map_err(|e| failed(sql, e))?.is_some() {}
    drop(rows);
    Ok(conn.changes())
}

#[async_trait]
impl Sql for EmbeddedDatabase {
    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<SqlRows> {
        let sql = sql.to_string();
        self.with_conn(move |conn| run_query(conn, &sql, &params))
            .await
    }

    async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<u64> {
        let sql = sql.to_string();
        self.with_conn(move |conn| run_execute(conn, &sql, &params))
            .await
    }

    async fn transaction(&self, statements: Vec<SqlStatement>) -> Result<Vec<u64>> {
        self.with_conn(move |conn| {
            let tx = conn
                .transaction()
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            let mut changed = Vec::with_capacity(statements.len());
            for s in &statements {
                changed.push(run_execute(&tx, &s.sql, &s.params)?);
            }
            tx.commit().map_err(|e| failed("COMMIT", e))?;
            Ok(changed)
        })
        .await
    }

    async fn execute_script(&self, sql: &str) -> Result<()> {
        let sql = sql.to_string();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction()
                .map_err(|e| BackendError::engine(BACKEND, e))?;
            tx.execute_batch(&sql).map_err(|e| failed(&sql, e))?;
            tx.commit().map_err(|e| failed("COMMIT", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Arc<dyn Sql>) {
        let dir = tempfile::tempdir().unwrap();
        let sql = EmbeddedSql::new(dir.path()).open("main").unwrap();
        (dir, sql)
    }

    #[tokio::test]
    async fn rows_round_trip_every_value_kind() {
        let (_dir, db) = db();
        db.execute_script("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")
            .await
            .unwrap();
        let n = db
            .execute(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
                vec![
                    SqlValue::Integer(-7),
                    SqlValue::Real(1.5),
                    SqlValue::Text("héllo".into()),
                    SqlValue::Blob(vec![0, 255]),
                    SqlValue::Null,
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        let rows = db.query("SELECT * FROM t", vec![]).await.unwrap();
        assert_eq!(rows.columns, ["i", "r", "s", "b", "n"]);
        assert_eq!(
            rows.rows,
            vec![vec![
                SqlValue::Integer(-7),
                SqlValue::Real(1.5),
                SqlValue::Text("héllo".into()),
                SqlValue::Blob(vec![0, 255]),
                SqlValue::Null,
            ]]
        );
    }

    #[tokio::test]
    async fn a_failed_transaction_changes_nothing() {
        let (_dir, db) = db();
        db.execute_script("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        let stmt = |sql: &str| SqlStatement {
            sql: sql.into(),
            params: vec![],
        };
        let err = db
            .transaction(vec![
                stmt("INSERT INTO t VALUES (1)"),
                stmt("INSERT INTO t VALUES (1)"),
            ])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        let rows = db.query("SELECT count(*) FROM t", vec![]).await.unwrap();
        assert_eq!(rows.rows[0][0], SqlValue::Integer(0));
        let changed = db
            .transaction(vec![
                stmt("INSERT INTO t VALUES (1)"),
                stmt("DELETE FROM t"),
            ])
            .await
            .unwrap();
        assert_eq!(changed, vec![1, 1]);
    }

    #[tokio::test]
    async fn errors_name_the_statement_and_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = EmbeddedSql::new(dir.path()).open("main").unwrap();
            let err = db.query("SELEC 1", vec![]).await.unwrap_err();
            assert!(err.to_string().contains("`SELEC 1`"), "{err}");
            db.execute_script("CREATE TABLE t (x); INSERT INTO t VALUES ('kept');")
                .await
                .unwrap();
            let n = db
                .execute("UPDATE t SET x = 'kept' RETURNING x", vec![])
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
        let db = EmbeddedSql::new(dir.path()).open("main").unwrap();
        let rows = db.query("SELECT x FROM t", vec![]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Text("kept".into())]]);
    }
}
