//! SQL databases the function declared in `gust.toml` (SQLite on the
//! embedded backend):
//!
//! ```toml
//! bindings = { db = { sql = "shop" } }
//! ```
//!
//! ```no_run
//! use gust_sdk::sql::{Database, Value};
//!
//! let db = Database::open("db");
//! db.execute("INSERT INTO orders (id, total) VALUES (?1, ?2)", &[Value::from(7), Value::from(9.5)])?;
//! let rows = db.query("SELECT id, total FROM orders WHERE total > ?1", &[Value::from(5.0)])?;
//! for row in &rows.rows {
//!     let id = row[0].as_i64();
//! }
//! # Ok::<(), gust_sdk::sql::Error>(())
//! ```

use std::fmt;

use crate::__wit::gust::function::sql as wit;

pub use wit::Value;

/// Why a statement failed (the database's message, naming the statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// The host's explanation.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sql: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// Rows returned by [`Database::query`].
#[derive(Debug, Clone)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One list of values per row.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

impl Value {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The number (integers widen), if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// As JSON: numbers, strings, `null`; blobs as arrays of bytes.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Integer(i) => (*i).into(),
            Value::Real(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Text(s) => s.clone().into(),
            Value::Blob(b) => b.clone().into(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A database bound under a name in `gust.toml`.
#[derive(Debug, Clone)]
pub struct Database {
    binding: String,
}

impl Database {
    /// The database bound as `binding` (checked on first use).
    pub fn open(binding: &str) -> Self {
        Self {
            binding: binding.to_string(),
        }
    }

    /// Runs a statement that returns rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        let rows = wit::query(&self.binding, sql, params).map_err(Error)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows.rows,
        })
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        wit::execute(&self.binding, sql, params).map_err(Error)
    }

    /// Runs statements in one transaction (all or nothing); returns the
    /// rows each changed.
    pub fn transaction(&self, statements: &[(&str, Vec<Value>)]) -> Result<Vec<u64>, Error> {
        let statements: Vec<wit::Statement> = statements
            .iter()
            .map(|(sql, params)| wit::Statement {
                sql: sql.to_string(),
                params: params.clone(),
            })
            .collect();
        wit::transaction(&self.binding, &statements).map_err(Error)
    }

    /// Runs `;`-separated statements without parameters in one transaction
    /// (e.g. `CREATE TABLE IF NOT EXISTS ...`); SQLite parses the script, so
    /// `;` inside strings and trigger bodies is fine.
    pub fn execute_script(&self, script: &str) -> Result<(), Error> {
        wit::execute_script(&self.binding, script).map_err(Error)
    }
}
