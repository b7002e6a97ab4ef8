//! The `postgres` backend: resources on PostgreSQL (through sqlx).
//!
//! One app's data lives in its own schema, [`schema_name`]`(namespace)`, so
//! several apps (and several test runs) share one database without seeing
//! each other's rows. Each resource kind is a submodule.

pub mod dedupe;
pub mod kv;
pub mod lease;
pub mod table;

pub use table::{PgTable, PgTables};
pub mod sql;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::{BackendError, Result};

/// Connections kept open per pool.
const MAX_CONNECTIONS: u32 = 16;

/// Opens a connection pool to `url` (`postgres://user@host:port/db`) and
/// checks that the server answers.
pub async fn connect(url: &str) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| {
            BackendError::engine(
                "postgres",
                format!("cannot connect to {}: {e}", crate::services::redact(url)),
            )
        })
}

/// The schema holding the data of `namespace` (an app name): `gust_` and the
/// name with every character other than ASCII letters and digits turned
/// into `_`, lower-cased (PostgreSQL folds unquoted names anyway).
pub fn schema_name(namespace: &str) -> String {
    let mut out = String::from("gust_");
    out.extend(namespace.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::schema_name;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert_eq!(schema_name("Shop-API"), "gust_shop_api");
        assert_eq!(schema_name("a.b c"), "gust_a_b_c");
    }
}
