//! Embedded blob containers: a container is the folder
//! `.gust/blobs/<container>/`, a blob is a file in it (so a person can drop
//! files in with `cp`, and the blob trigger sees blobs written by functions).
//!
//! A put writes a hidden temporary file next to the target, syncs it and
//! renames it over the target, then syncs the folder: readers see the old
//! or the new version, never a mix, and a returned put survives a crash.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::blob::{BlobContainer, BlobProvider, check_blob_name};
use crate::{BackendError, Result};

const BACKEND: &str = "embedded blob";

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

/// The blob containers of one app, as folders under one root.
#[derive(Clone)]
pub struct EmbeddedBlobs {
    root: PathBuf,
}

impl EmbeddedBlobs {
    /// Containers are folders under `root` (`.gust/blobs/`).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
}

impl BlobProvider for EmbeddedBlobs {
    fn container(&self, name: &str) -> Result<Arc<dyn BlobContainer>> {
        check_blob_name(name)?;
        if name.contains('/') {
            return Err(BackendError::InvalidValue {
                key: name.to_string(),
                reason: "a container name has no `/`".into(),
            });
        }
        Ok(Arc::new(EmbeddedContainer {
            dir: self.root.join(name),
        }))
    }
}

/// One container folder.
pub struct EmbeddedContainer {
    dir: PathBuf,
}

/// Whether a file name is one of this backend's temporary files.
fn is_temporary(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|f| f.starts_with(".gust-tmp-"))
}

fn put_file(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let target = dir.join(name);
    let parent = target.parent().expect("a blob path has a parent");
    std::fs::create_dir_all(parent)?;
    let mut suffix = [0u8; 8];
    let _ = getrandom::fill(&mut suffix);
    let tmp = parent.join(format!(
        ".gust-tmp-{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(parent)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn collect(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let Some(file) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let name = if rel.is_empty() {
            file.clone()
        } else {
            format!("{rel}/{file}")
        };
        if entry.file_type()?.is_dir() {
            // Only descend where names can still start with the prefix.
            let folder = format!("{name}/");
            if prefix.starts_with(&folder) || folder.starts_with(prefix) {
                collect(&entry.path(), &name, prefix, out)?;
            }
        } else if name.starts_with(prefix) && !is_temporary(&name) {
            out.push(name);
        }
    }
    Ok(())
}

#[async_trait]
impl BlobContainer for EmbeddedContainer {
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_blob_name(name)?;
        let path = self.dir.join(name);
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if path.is_dir() => {
                Err(engine(format!("`{}` is a folder: {e}", path.display())))
            }
            Err(e) => Err(engine(e)),
        })
        .await
        .map_err(engine)?
    }

    async fn put(&self, name: &str, data: Vec<u8>) -> Result<()> {
        check_blob_name(name)?;
        let (dir, name) = (self.dir.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            put_file(&dir, &name, &data).map_err(|e| engine(format!("cannot write `{name}`: {e}")))
        })
        .await
        .map_err(engine)?
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        check_blob_name(name)?;
        let path = self.dir.join(name);
        tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(engine(e)),
        })
        .await
        .map_err(engine)?
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let (dir, prefix) = (self.dir.clone(), prefix.to_string());
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            collect(&dir, "", &prefix, &mut out).map_err(engine)?;
            out.sort();
            out.truncate(limit);
            Ok(out)
        })
        .await
        .map_err(engine)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_delete_and_no_escape() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = EmbeddedBlobs::new(dir.path());
        let c = blobs.container("reports").unwrap();
        c.put("2026/a.csv", b"a".to_vec()).await.unwrap();
        c.put("2026/b.csv", b"b".to_vec()).await.unwrap();
        c.put("top.txt", b"t".to_vec()).await.unwrap();
        c.put("2026/a.csv", b"a2".to_vec()).await.unwrap();
        assert_eq!(c.get("2026/a.csv").await.unwrap().unwrap(), b"a2");
        assert_eq!(c.get("missing").await.unwrap(), None);
        assert_eq!(
            c.list("", 10).await.unwrap(),
            ["2026/a.csv", "2026/b.csv", "top.txt"]
        );
        assert_eq!(c.list("2026/", 1).await.unwrap(), ["2026/a.csv"]);
        assert_eq!(c.list("2026/b", 10).await.unwrap(), ["2026/b.csv"]);
        assert!(c.delete("top.txt").await.unwrap());
        assert!(!c.delete("top.txt").await.unwrap());
        // A person's file shows up as a blob.
        std::fs::write(dir.path().join("reports/dropped.csv"), b"x").unwrap();
        assert_eq!(c.get("dropped.csv").await.unwrap().unwrap(), b"x");
        assert!(c.put("../escape", vec![]).await.is_err());
        assert!(blobs.container("../x").is_err());
        assert!(!dir.path().join("escape").exists());
    }
}
