//! Blob containers on the NATS JetStream object store.
//!
//! A container is the object store bucket `<PREFIX>_B_<container>` (so the
//! stream `OBJ_<PREFIX>_B_<container>`), the prefix and container escaped
//! like queue names (`_` stays in the prefix); it is created, file-stored, on first use. A blob is an
//! object of the same name.
//!
//! How the [`BlobContainer`] operations map onto the object store:
//!
//! - `put`: the object store's put: the chunks under a fresh object id
//!   (nuid), then the object's metadata message, then the old chunks purged.
//!   Readers find the object through its metadata, so they see the old or the
//!   new version; a read racing the purge of the version it started on fails
//!   and is retried.
//! - `delete`: the metadata is checked first, so a missing object reports
//!   `false` (two deletes racing may both report `true`).
//! - `list` / `list_versions`: the bucket's metadata read from the start
//!   (one message per object), filtered and sorted in the client: a page
//!   costs a pass over the whole bucket's metadata, not over its data.
//! - A version is `<digest>:<nuid>`: every put has a new nuid.
//! - `wait_for_change` watches the bucket's metadata subjects (a consumer
//!   that starts on the first call and lives as long as the container).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::object_store::{
    self, GetErrorKind, InfoErrorKind, ObjectInfo, ObjectMetadata, ObjectStore,
};
use async_nats::jetstream::{self, stream::StorageType};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, OnceCell};

use super::{escape, escape_prefix};
use crate::blob::{BlobContainer, BlobInfo, BlobProvider, check_blob_name, check_container_name};
use crate::{BackendError, Result};

const BACKEND: &str = "nats blob";
/// Reads retried when a put replaced the object mid-read.
const READ_ATTEMPTS: usize = 3;
/// Bucket creations retried (see [`NatsContainer::store`]).
const CREATE_ATTEMPTS: u64 = 4;

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

/// Blob containers on a NATS JetStream server, one object store bucket each.
///
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct NatsBlobs {
    js: jetstream::Context,
    /// Bucket name prefix (escaped, upper case).
    prefix: String,
}

impl std::fmt::Debug for NatsBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBlobs")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsBlobs {
    /// Connects to the server at `url` (e.g. `nats://127.0.0.1:4222`).
    ///
    /// `namespace` keeps apps apart on one server: container `<name>` is the
    /// bucket `<NAMESPACE>_B_<name>`, both escaped (letters, digits and `-`
    /// stay, and `_` in the namespace; any other byte becomes `_` and two
    /// hex digits) and the namespace upper-cased.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        if namespace.is_empty() {
            return Err(BackendError::InvalidValue {
                key: "namespace".into(),
                reason: "must not be empty".into(),
            });
        }
        let client = async_nats::connect(url).await.map_err(|e| {
            engine(format!(
                "cannot connect to {}: {e}",
                crate::services::redact(url)
            ))
        })?;
        Ok(Self {
            js: jetstream::new(client),
            prefix: escape_prefix(namespace).to_uppercase(),
        })
    }

    /// The object store bucket that holds container `name`.
    pub fn bucket_name(&self, name: &str) -> String {
        format!("{}_B_{}", self.prefix, escape(name))
    }

    /// The container called `name`, as its concrete type.
    pub fn open_container(&self, name: &str) -> Result<NatsContainer> {
        check_container_name(name)?;
        Ok(NatsContainer {
            js: self.js.clone(),
            bucket: self.bucket_name(name),
            store: OnceCell::new(),
            watch: Mutex::default(),
        })
    }

    /// Deletes container `name` and every blob in it (nothing if it does
    /// not exist).
    pub async fn delete_container(&self, name: &str) -> Result<()> {
        check_container_name(name)?;
        let bucket = self.bucket_name(name);
        match self.js.delete_object_store(&bucket).await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(engine(format!("cannot delete bucket `{bucket}`: {e}"))),
        }
    }
}

impl BlobProvider for NatsBlobs {
    fn container(&self, name: &str) -> Result<Arc<dyn BlobContainer>> {
        Ok(Arc::new(self.open_container(name)?))
    }
}

/// One container: an object store bucket, created on first use.
pub struct NatsContainer {
    js: jetstream::Context,
    bucket: String,
    store: OnceCell<ObjectStore>,
    /// The change watcher, started on the first `wait_for_change`.
    watch: Mutex<Option<BucketWatch>>,
}

/// A task following the bucket's metadata, and the signal it raises.
struct BucketWatch {
    task: tokio::task::JoinHandle<()>,
    changed: Arc<Notify>,
}

impl Drop for NatsContainer {
    fn drop(&mut self) {
        let watch = self.watch.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(watch) = watch.take() {
            watch.task.abort();
        }
    }
}

fn info_of(info: &ObjectInfo) -> BlobInfo {
    BlobInfo {
        name: info.name.clone(),
        version: format!(
            "{}:{}",
            info.digest.as_deref().unwrap_or_default(),
            info.nuid
        ),
        size: info.size as u64,
        modified: info.modified.map(SystemTime::from),
        complete: true,
    }
}

impl NatsContainer {
    async fn store(&self) -> Result<&ObjectStore> {
        self.store
            .get_or_try_init(|| async {
                let mut attempt = 0;
                loop {
                    if let Ok(store) = self.js.get_object_store(&self.bucket).await {
                        return Ok(store);
                    }
                    let created = self
                        .js
                        .create_object_store(object_store::Config {
                            bucket: self.bucket.clone(),
                            storage: StorageType::File,
                            ..Default::default()
                        })
                        .await;
                    match created {
                        Ok(store) => return Ok(store),
                        // Another process may have created it meanwhile;
                        // and NATS 2.9 can fail to make a stream's folder
                        // while another stream is deleted (the folder that
                        // holds both goes away), which passes on retry.
                        Err(_) if attempt < CREATE_ATTEMPTS => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                        }
                        Err(e) => {
                            return Err(engine(format!(
                                "cannot create bucket `{}`: {e}",
                                self.bucket
                            )));
                        }
                    }
                }
            })
            .await
    }

    fn failed(&self, what: &str, name: &str, e: impl std::fmt::Display) -> BackendError {
        engine(format!(
            "cannot {what} `{name}` in bucket `{}`: {e}",
            self.bucket
        ))
    }

    /// The change signal, starting the watcher on first use; `None` if the
    /// bucket cannot be watched.
    async fn changed(&self) -> Option<Arc<Notify>> {
        if let Some(watch) = self
            .watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Some(watch.changed.clone());
        }
        let store = self.store().await.ok()?;
        let mut updates = match store.watch().await {
            Ok(updates) => updates,
            Err(e) => {
                tracing::warn!(bucket = %self.bucket, error = %e,
                    "cannot watch the blob bucket; changes are seen by polling only");
                return None;
            }
        };
        let changed = Arc::new(Notify::new());
        let signal = changed.clone();
        let task = tokio::spawn(async move {
            while let Some(update) = updates.next().await {
                if update.is_err() {
                    break;
                }
                // Wake every waiter, and leave a permit for the next call.
                signal.notify_waiters();
                signal.notify_one();
            }
        });
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        match watch.as_ref() {
            // Another caller started one meanwhile: keep that one.
            Some(existing) => {
                task.abort();
                Some(existing.changed.clone())
            }
            None => {
                *watch = Some(BucketWatch {
                    task,
                    changed: changed.clone(),
                });
                Some(changed)
            }
        }
    }
}

#[async_trait]
impl BlobContainer for NatsContainer {
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_with_info(name).await?.map(|(_, data)| data))
    }

    async fn get_with_info(&self, name: &str) -> Result<Option<(BlobInfo, Vec<u8>)>> {
        check_blob_name(name)?;
        let store = self.store().await?;
        let mut last_error = String::new();
        for _ in 0..READ_ATTEMPTS {
            let mut object = match store.get(name).await {
                Ok(object) => object,
                Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.failed("get", name, e)),
            };
            let info = info_of(object.info());
            let mut data = Vec::with_capacity(info.size as usize);
            match object.read_to_end(&mut data).await {
                Ok(_) if data.len() as u64 == info.size => return Ok(Some((info, data))),
                // A put replaced the object and purged the chunks being read.
                Ok(_) => last_error = format!("read {} of {} bytes", data.len(), info.size),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(self.failed("read", name, last_error))
    }

    async fn put(&self, name: &str, data: Vec<u8>) -> Result<()> {
        check_blob_name(name)?;
        let store = self.store().await?;
        let meta = ObjectMetadata {
            name: name.to_string(),
            ..Default::default()
        };
        store
            .put(meta, &mut data.as_slice())
            .await
            .map_err(|e| self.failed("put", name, e))?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        check_blob_name(name)?;
        let store = self.store().await?;
        match store.info(name).await {
            Ok(info) if info.deleted => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == InfoErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.failed("look up", name, e)),
        }
        store
            .delete(name)
            .await
            .map_err(|e| self.failed("delete", name, e))?;
        Ok(true)
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let infos = self.list_versions(prefix, None, limit).await?;
        Ok(infos.into_iter().map(|i| i.name).collect())
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        let store = self.store().await?;
        let mut objects = store
            .list()
            .await
            .map_err(|e| self.failed("list", prefix, e))?;
        let mut out = Vec::new();
        while let Some(object) = objects.next().await {
            let object = object.map_err(|e| self.failed("list", prefix, e))?;
            let wanted = !object.deleted
                && object.name.starts_with(prefix)
                && after.is_none_or(|a| object.name.as_str() > a);
            if wanted {
                out.push(info_of(&object));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.truncate(limit);
        Ok(out)
    }

    async fn wait_for_change(&self, timeout: Duration) -> bool {
        let start = tokio::time::Instant::now();
        match self.changed().await {
            Some(changed) => tokio::time::timeout_at(start + timeout, changed.notified())
                .await
                .is_ok(),
            None => {
                tokio::time::sleep_until(start + timeout).await;
                false
            }
        }
    }
}
