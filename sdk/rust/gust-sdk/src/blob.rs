//! Blob containers the function declared in `gust.toml`:
//!
//! ```toml
//! bindings = { files = { blob = "reports" } }
//! ```
//!
//! ```no_run
//! use gust_sdk::blob::Container;
//!
//! let files = Container::open("files");
//! files.write("2026/11/summary.csv", b"day,total\n25,42\n")?;
//! let csv = files.read("2026/11/summary.csv")?;
//! let names = files.list("2026/", 100)?;
//! # Ok::<(), gust_sdk::blob::Error>(())
//! ```
//!
//! On the embedded backend a container is the folder
//! `.gust/blobs/<container>/`: a blob written here starts the functions
//! with a blob trigger on that container.

use std::fmt;

use crate::__wit::gust::function::blob as wit;

/// Why a blob call failed.
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
        write!(f, "blob: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// A container bound under a name in `gust.toml`.
#[derive(Debug, Clone)]
pub struct Container {
    binding: String,
}

impl Container {
    /// The container bound as `binding` (checked on first use).
    pub fn open(binding: &str) -> Self {
        Self {
            binding: binding.to_string(),
        }
    }

    /// The blob called `name` (`/`-separated), if it exists.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        wit::read(&self.binding, name).map_err(Error)
    }

    /// Stores `data` as `name`, replacing any previous version.
    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> Result<(), Error> {
        wit::write(&self.binding, name, data.as_ref()).map_err(Error)
    }

    /// Removes `name`; `false` if it did not exist.
    pub fn delete(&self, name: &str) -> Result<bool, Error> {
        wit::delete(&self.binding, name).map_err(Error)
    }

    /// Up to `limit` names starting with `prefix`, in order.
    pub fn list(&self, prefix: &str, limit: u32) -> Result<Vec<String>, Error> {
        wit::list(&self.binding, prefix, limit).map_err(Error)
    }
}
