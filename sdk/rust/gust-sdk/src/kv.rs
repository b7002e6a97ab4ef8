//! Key-value stores (`wasi:keyvalue`).
//!
//! A function opens a store by its **binding name**, as declared in `gust.toml`:
//!
//! ```toml
//! bindings = { counter = { kv = "counts" } }
//! ```
//!
//! ```no_run
//! let store = gust_sdk::kv::Store::open("counter")?;
//! let n = store.increment("calls", 1)?;
//! store.set("last", format!("call #{n}"))?;
//! # Ok::<(), gust_sdk::kv::Error>(())
//! ```
//!
//! Opening a name the function did not declare fails with [`Error::AccessDenied`].

use crate::__wit::wasi::keyvalue::{atomics, batch, store as wit};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The host knows no store with this name.
    NoSuchStore,
    /// The function did not declare this binding in `gust.toml`.
    AccessDenied,
    /// Any other failure reported by the host (backend unavailable, ...).
    Other(String),
    /// A value could not be converted to or from JSON (from
    /// [`Store::get_json`] / [`Store::set_json`]).
    Json(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchStore => f.write_str("no such key-value store"),
            Error::AccessDenied => f.write_str(
                "access denied to key-value store (is the binding declared in gust.toml?)",
            ),
            Error::Other(message) => write!(f, "key-value error: {message}"),
            Error::Json(message) => write!(f, "key-value JSON error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::NoSuchStore => Error::NoSuchStore,
            wit::Error::AccessDenied => Error::AccessDenied,
            wit::Error::Other(message) => Error::Other(message),
        }
    }
}

/// A key and its value, as in [`Store::get_many`] and [`Store::set_many`].
pub type Entry = (String, Vec<u8>);

/// An open key-value store (a `wasi:keyvalue` bucket).
#[derive(Debug)]
pub struct Store {
    bucket: wit::Bucket,
}

impl Store {
    /// Opens the store bound to `binding` in `gust.toml`.
    pub fn open(binding: &str) -> Result<Store, Error> {
        Ok(Store {
            bucket: wit::open(binding)?,
        })
    }

    /// The value of `key`, or `None` when it is not set.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// The value of `key` as UTF-8 text (invalid UTF-8 is replaced with U+FFFD).
    pub fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self.get(key)?.map(|v| {
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }))
    }

    /// Sets `key` to `value`, replacing any previous value.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        Ok(self.bucket.set(key, value.as_ref())?)
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` is set.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// Every key in the store (follows the host's pagination to the end).
    pub fn list_keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.bucket.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) if Some(next) != cursor => cursor = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// Atomically adds `delta` to the number stored at `key` (a missing key counts
    /// as 0) and returns the new value.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// The value of `key` parsed as JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Json(format!("value of {key:?}: {e}"))),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value` serialized as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Error::Json(format!("value of {key:?}: {e}")))?;
        self.set(key, bytes)
    }

    /// Many keys in one call: one entry per key in `keys`, in order, `Some((key,
    /// value))` when it is set and `None` when it is not.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Entry>>, Error> {
        Ok(batch::get_many(&self.bucket, keys)?)
    }

    /// Sets many keys in one call.
    pub fn set_many(&self, entries: &[Entry]) -> Result<(), Error> {
        Ok(batch::set_many(&self.bucket, entries)?)
    }

    /// Deletes many keys in one call.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        Ok(batch::delete_many(&self.bucket, keys)?)
    }
}
