//! Blob containers: named byte objects under `/`-separated names.
//!
//! Every blob has a *version*: an opaque text that changes whenever the
//! blob is replaced, so a trigger can run a function once per version
//! ([`BlobContainer::list_versions`]) and sleep until something changes
//! ([`BlobContainer::wait_for_change`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::{BackendError, Result};

/// One blob as a listing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's name in its container.
    pub name: String,
    /// Changes whenever the blob is replaced (engine-specific text: an
    /// ETag, a digest and object id, a file's size, time and inode).
    pub version: String,
    /// Size in bytes.
    pub size: u64,
    /// When this version was written, as the engine reports it.
    pub modified: Option<SystemTime>,
    /// `false` while the blob may still be being written from outside the
    /// backend (an embedded file changed a moment ago: `cp` writes in place);
    /// a trigger leaves it for a later look. Puts through the trait are
    /// atomic, so on engines without outside writers this is always `true`.
    pub complete: bool,
}

/// One container of blobs.
#[async_trait]
pub trait BlobContainer: Send + Sync {
    /// The blob called `name`, if it exists.
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `data` as `name`, replacing any previous version; the new
    /// version is complete and durable when this returns (readers never see
    /// a half-written blob).
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<()>;
    /// Removes `name`; `false` if it did not exist.
    async fn delete(&self, name: &str) -> Result<bool>;
    /// Names starting with `prefix`, in order, at most `limit`.
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>>;
    /// Blobs whose names start with `prefix` and sort after `after` (all of
    /// them when `None`), in name order, at most `limit`: page through a
    /// container by passing the last name of one page as `after` of the next.
    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>>;
    /// The blob called `name` with the [`BlobInfo`] of exactly the version
    /// that was read, if it exists.
    async fn get_with_info(&self, name: &str) -> Result<Option<(BlobInfo, Vec<u8>)>>;
    /// Waits until something in the container may have changed, or `timeout`
    /// passed; `true` when the engine signalled a change. A change made
    /// between two calls makes the next call return at once; a spurious
    /// `true` is allowed. The default cannot watch: it sleeps `timeout` and
    /// returns `false` (callers poll).
    async fn wait_for_change(&self, timeout: Duration) -> bool {
        tokio::time::sleep(timeout).await;
        false
    }
}

/// Opens blob containers by name.
pub trait BlobProvider: Send + Sync {
    /// The container called `name`, created on first use.
    fn container(&self, name: &str) -> Result<Arc<dyn BlobContainer>>;
}

/// Checks a blob name: non-empty `/`-separated segments, none of them `.`
/// or `..`, no leading `/`, no backslash or control character (NUL, tab,
/// newline, ...), at most 1,024 bytes. Every engine checks names with this,
/// so a name is accepted or refused the same way everywhere.
pub fn check_blob_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(BackendError::InvalidValue {
            key: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name.len() > 1024 {
        return bad("a blob name has 1 to 1024 bytes");
    }
    if name.contains(|c: char| c == '\\' || c.is_control()) {
        return bad("a blob name cannot contain `\\` or a control character");
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("a blob name is `/`-separated non-empty segments other than `.` and `..`");
    }
    Ok(())
}

/// Checks a container name: a valid blob name without `/`.
pub fn check_container_name(name: &str) -> Result<()> {
    check_blob_name(name)?;
    if name.contains('/') {
        return Err(BackendError::InvalidValue {
            key: name.to_string(),
            reason: "a container name has no `/`".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_blob_name, check_container_name};

    #[test]
    fn names_cannot_escape_the_container() {
        for good in ["a.csv", "incoming/2026/x.json", "a b/c"] {
            assert!(check_blob_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "a\\b",
            "./a",
            "a\tb",
            "a\nb",
            "a\0b",
        ] {
            assert!(check_blob_name(bad).is_err(), "{bad}");
        }
        assert!(check_container_name("uploads").is_ok());
        assert!(check_container_name("a/b").is_err());
    }
}
