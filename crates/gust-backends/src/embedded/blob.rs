//! Embedded blob containers: a container is the folder
//! `.gust/blobs/<container>/`, a blob is a file in it (so a person can drop
//! files in with `cp`, and the blob trigger sees blobs written by functions).
//!
//! A put writes a hidden temporary file next to the target, syncs it and
//! renames it over the target, then syncs the folder: readers see the old
//! or the new version, never a mix, and a returned put survives a crash.
//!
//! A blob's version is `<size>-<mtime in ns>-<inode>` (a put makes a new
//! inode, so two puts within one clock tick still differ). A file counts as
//! [`complete`](BlobInfo::complete) once it has been unchanged for 300 ms and
//! its name is not one editors and downloaders use for files in progress
//! (a hidden segment, `~` or `.tmp` at the end). `wait_for_change` watches
//! the folder with the OS's file notifications.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use notify::Watcher;
use tokio::sync::Notify;

use crate::blob::{BlobContainer, BlobInfo, BlobProvider, check_blob_name, check_container_name};
use crate::{BackendError, Result};

const BACKEND: &str = "embedded blob";
/// How long a file must be unchanged before it counts as complete.
const QUIET: Duration = Duration::from_millis(300);

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
        check_container_name(name)?;
        Ok(Arc::new(EmbeddedContainer {
            dir: self.root.join(name),
            watch: Mutex::default(),
        }))
    }
}

/// One container folder.
pub struct EmbeddedContainer {
    dir: PathBuf,
    /// The folder's watcher, made on the first `wait_for_change`.
    watch: Mutex<Option<FolderWatch>>,
}

/// A file watcher on the container folder and the signal it raises.
struct FolderWatch {
    /// Kept alive while the container is; `None` if watching failed.
    _watcher: Option<notify::RecommendedWatcher>,
    changed: Arc<Notify>,
}

impl EmbeddedContainer {
    /// The change signal, starting the watcher on first use.
    fn changed(&self) -> Option<Arc<Notify>> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let watch = watch.get_or_insert_with(|| {
            let changed = Arc::new(Notify::new());
            let signal = changed.clone();
            let watcher = std::fs::create_dir_all(&self.dir)
                .map_err(notify::Error::io)
                .and_then(|()| {
                    notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                        if event.is_ok_and(|e| !e.kind.is_access()) {
                            // Wake every waiter, and leave a permit for the next call.
                            signal.notify_waiters();
                            signal.notify_one();
                        }
                    })
                })
                .and_then(|mut w| {
                    w.watch(&self.dir, notify::RecursiveMode::Recursive)
                        .map(|()| w)
                });
            if let Err(e) = &watcher {
                tracing::warn!(folder = %self.dir.display(), error = %e,
                    "cannot watch the blob container; changes are seen by polling only");
            }
            FolderWatch {
                _watcher: watcher.ok(),
                changed,
            }
        });
        watch._watcher.as_ref().map(|_| watch.changed.clone())
    }
}

/// Whether a name looks like a file still in progress (hidden, editor
/// backup, partial download).
fn looks_in_progress(name: &str) -> bool {
    name.split('/').any(|s| s.starts_with('.')) || name.ends_with('~') || name.ends_with(".tmp")
}

fn info_of(name: String, meta: &std::fs::Metadata) -> BlobInfo {
    let modified = meta.modified().ok();
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let quiet = modified.is_none_or(|m| match SystemTime::now().duration_since(m) {
        Ok(age) => age >= QUIET,
        Err(ahead) => ahead.duration() >= QUIET,
    });
    BlobInfo {
        version: format!("{}-{nanos}-{}", meta.len(), meta.ino()),
        size: meta.len(),
        modified,
        complete: quiet && !looks_in_progress(&name),
        name,
    }
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
            // A folder is not a blob (it holds blobs named `<folder>/...`).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || path.is_dir() => Ok(None),
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || path.is_dir() => Ok(false),
            Err(e) => Err(engine(e)),
        })
        .await
        .map_err(engine)?
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        let (dir, prefix) = (self.dir.clone(), prefix.to_string());
        let after = after.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let mut names = Vec::new();
            collect(&dir, "", &prefix, &mut names).map_err(engine)?;
            names.retain(|n| after.as_ref().is_none_or(|a| n > a));
            names.sort();
            let mut out = Vec::new();
            for name in names {
                if out.len() >= limit {
                    break;
                }
                match std::fs::metadata(dir.join(&name)) {
                    Ok(meta) if meta.is_file() => out.push(info_of(name, &meta)),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // deleted meanwhile
                    Err(e) => return Err(engine(format!("cannot stat `{name}`: {e}"))),
                }
            }
            Ok(out)
        })
        .await
        .map_err(engine)?
    }

    async fn get_with_info(&self, name: &str) -> Result<Option<(BlobInfo, Vec<u8>)>> {
        use std::io::Read;
        check_blob_name(name)?;
        let (path, name) = (self.dir.join(name), name.to_string());
        tokio::task::spawn_blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(engine(format!("cannot open `{name}`: {e}"))),
            };
            // The metadata of the open file is that of the version read (a
            // put replaces the file, it never writes into it).
            let meta = file.metadata().map_err(engine)?;
            if meta.is_dir() {
                return Ok(None); // a folder is not a blob
            }
            let mut data = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut data)
                .map_err(|e| engine(format!("cannot read `{name}`: {e}")))?;
            Ok(Some((info_of(name, &meta), data)))
        })
        .await
        .map_err(engine)?
    }

    async fn wait_for_change(&self, timeout: Duration) -> bool {
        match self.changed() {
            Some(changed) => tokio::time::timeout(timeout, changed.notified())
                .await
                .is_ok(),
            None => {
                tokio::time::sleep(timeout).await;
                false
            }
        }
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

    #[tokio::test]
    async fn files_in_progress_are_not_complete() {
        let dir = tempfile::tempdir().unwrap();
        let c = EmbeddedBlobs::new(dir.path()).container("drop").unwrap();
        let folder = dir.path().join("drop");
        std::fs::create_dir_all(folder.join(".partial")).unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for name in ["a.csv", "b.csv~", "c.tmp", ".d.csv", ".partial/e.csv"] {
            let file = std::fs::File::create(folder.join(name)).unwrap();
            file.set_modified(an_hour_ago).unwrap();
        }
        let listed = c.list_versions("", None, 10).await.unwrap();
        let complete: Vec<_> = listed
            .iter()
            .map(|i| (i.name.as_str(), i.complete))
            .collect();
        assert_eq!(
            complete,
            [
                (".d.csv", false),
                (".partial/e.csv", false),
                ("a.csv", true),
                ("b.csv~", false),
                ("c.tmp", false),
            ]
        );
        // A folder is not a blob.
        assert_eq!(c.get(".partial").await.unwrap(), None);
        assert!(!c.delete(".partial").await.unwrap());
    }
}
