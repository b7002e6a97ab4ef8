//! Blob containers: named byte objects under `/`-separated names.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{BackendError, Result};

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
}

/// Opens blob containers by name.
pub trait BlobProvider: Send + Sync {
    /// The container called `name`, created on first use.
    fn container(&self, name: &str) -> Result<Arc<dyn BlobContainer>>;
}

/// Checks a blob name: non-empty `/`-separated segments, none of them `.`
/// or `..`, no leading `/`, no backslash or NUL, at most 1,024 bytes.
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
    if name.contains(['\\', '\0']) {
        return bad("a blob name cannot contain `\\` or NUL");
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("a blob name is `/`-separated non-empty segments other than `.` and `..`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_blob_name;

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
        ] {
            assert!(check_blob_name(bad).is_err(), "{bad}");
        }
    }
}
