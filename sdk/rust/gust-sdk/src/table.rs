//! Document tables the function declared in `gust.toml`; every write
//! appears on the table's change feed (trigger `changefeed`):
//!
//! ```toml
//! bindings = { contacts = { table = "contacts" } }
//! ```
//!
//! ```no_run
//! use gust_sdk::table::Table;
//!
//! let contacts = Table::open("contacts");
//! contacts.put_json("c-1", &serde_json::json!({ "name": "Ada" }))?;
//! let ada: Option<serde_json::Value> = contacts.get_json("c-1")?;
//! contacts.delete("c-1")?;
//! # Ok::<(), gust_sdk::table::Error>(())
//! ```

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__wit::gust::function::table as wit;

/// Why a table call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// The explanation.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its key.
    pub key: String,
    /// Its body (JSON by convention).
    pub body: Vec<u8>,
    /// Change-feed sequence of the write that produced it.
    pub version: u64,
}

impl Document {
    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error(format!(
                "document `{}` is not the expected JSON: {e}",
                self.key
            ))
        })
    }
}

/// A table bound under a name in `gust.toml`.
#[derive(Debug, Clone)]
pub struct Table {
    binding: String,
}

impl Table {
    /// The table bound as `binding` (checked on first use).
    pub fn open(binding: &str) -> Self {
        Self {
            binding: binding.to_string(),
        }
    }

    /// The document under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Document>, Error> {
        Ok(wit::get(&self.binding, key)
            .map_err(Error)?
            .map(|d| Document {
                key: d.key,
                body: d.body,
                version: d.version,
            }))
    }

    /// The document under `key`, parsed as JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get(key)?.map(|d| d.json()).transpose()
    }

    /// Stores `body` under `key`; returns the change's sequence number.
    pub fn put(&self, key: &str, body: impl AsRef<[u8]>) -> Result<u64, Error> {
        wit::put(&self.binding, key, body.as_ref()).map_err(Error)
    }

    /// Stores `value` as JSON under `key`.
    pub fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<u64, Error> {
        let body =
            serde_json::to_vec(value).map_err(|e| Error(format!("cannot encode JSON: {e}")))?;
        self.put(key, body)
    }

    /// Deletes `key`; `false` if it did not exist.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        wit::delete(&self.binding, key).map_err(Error)
    }

    /// Up to `limit` (at most 1,000) documents whose key starts with
    /// `prefix`, in key order, after key `after`.
    pub fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Document>, Error> {
        Ok(wit::scan(&self.binding, prefix, after, limit)
            .map_err(Error)?
            .into_iter()
            .map(|d| Document {
                key: d.key,
                body: d.body,
                version: d.version,
            })
            .collect())
    }
}
