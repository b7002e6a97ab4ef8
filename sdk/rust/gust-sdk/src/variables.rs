//! Application variables (`wasi:config/store`).
//!
//! Variables are declared in `gust.toml` under `[variables]` (with an optional
//! default) and their values are set by the runtime configuration:
//!
//! ```no_run
//! let greeting = gust_sdk::variables::get("greeting")?.unwrap_or_else(|| "hello".into());
//! # Ok::<(), gust_sdk::variables::Error>(())
//! ```

use crate::__wit::wasi::config::store as wit;
use std::fmt;

/// Why a variable could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The source of the value (secret store, environment, ...) failed.
    Upstream(String),
    /// An I/O failure in the host.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Upstream(message) => write!(f, "variable source error: {message}"),
            Error::Io(message) => write!(f, "variable I/O error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::Upstream(message) => Error::Upstream(message),
            wit::Error::Io(message) => Error::Io(message),
        }
    }
}

/// The value of variable `name`, or `None` when it has no value.
pub fn get(name: &str) -> Result<Option<String>, Error> {
    Ok(wit::get(name)?)
}

/// Every variable visible to the function, as `(name, value)` pairs.
pub fn get_all() -> Result<Vec<(String, String)>, Error> {
    Ok(wit::get_all()?)
}
