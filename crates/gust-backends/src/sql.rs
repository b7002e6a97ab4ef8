//! SQL databases (`gust:function/sql`): parameterised statements returning
//! rows, and transactions of several statements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;

/// One SQL value (SQLite's storage classes, which every engine can map).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// The result of a query: column names and rows of values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlRows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each has one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

/// A statement with its positional parameters (`?1`, `?2` or `?`).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlStatement {
    /// The SQL text.
    pub sql: String,
    /// Values bound to the placeholders.
    pub params: Vec<SqlValue>,
}

/// One SQL database.
#[async_trait]
pub trait Sql: Send + Sync {
    /// Runs a statement that returns rows.
    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<SqlRows>;
    /// Runs a statement and returns the number of rows it changed
    /// (committed durably before returning).
    async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<u64>;
    /// Runs `statements` in one transaction: all of them or none. Returns
    /// the rows changed by each.
    async fn transaction(&self, statements: Vec<SqlStatement>) -> Result<Vec<u64>>;
    /// Runs a script of `;`-separated statements without parameters (schema
    /// set-up), in one transaction.
    async fn execute_script(&self, sql: &str) -> Result<()>;
}

/// Opens SQL databases by resource name.
pub trait SqlProvider: Send + Sync {
    /// The database called `name`, created on first use.
    fn open(&self, name: &str) -> Result<Arc<dyn Sql>>;
}
