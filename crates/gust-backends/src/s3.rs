//! The `s3` backend: blob containers on Amazon S3 or any S3-compatible
//! server (MinIO, moto, ...), through [`object_store`].
//!
//! One bucket holds every app and container: blob `<name>` of container
//! `<container>` in namespace `<namespace>` is the key
//! `<namespace>/<container>/<name>`. Requests are path-style
//! (`<endpoint>/<bucket>/<key>`).
//!
//! How the [`BlobContainer`] operations map onto S3:
//!
//! - `put`: one `PutObject` (atomic: readers see the old or the new object).
//! - `get` / `get_with_info`: `GetObject`; the version is that of the object read.
//! - `delete`: `HeadObject`, then `DeleteObject` (S3 deletes a missing key
//!   without complaint, so the head tells whether it existed; two deletes
//!   racing may both report `true`).
//! - `list` / `list_versions`: `ListObjectsV2` with the key prefix,
//!   `start-after` and `max-keys`, in S3's key order (UTF-8 bytes, the same
//!   as Rust's string order).
//! - A version is `<ETag>@<Last-Modified in ms>`. S3's ETag is the MD5 of
//!   the content for single-part uploads, so rewriting identical bytes within
//!   the same second keeps the version.
//! - `wait_for_change` cannot watch: it sleeps its timeout (callers poll).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload, RetryConfig};

use crate::blob::{BlobContainer, BlobInfo, BlobProvider, check_blob_name, check_container_name};
use crate::{BackendError, Result};

const BACKEND: &str = "s3 blob";
/// Largest page asked of S3 (its own maximum).
const MAX_KEYS: usize = 1000;

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

/// Blob containers in one S3 bucket, under one namespace.
///
/// Cheap to clone; clones share the HTTP client.
#[derive(Clone)]
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    bucket: String,
    namespace: String,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Blobs")
            .field("bucket", &self.bucket)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The bucket and settings of an `s3://` URL.
fn parse_url(url: &str) -> Result<(String, Vec<(String, String)>)> {
    let bad = |reason: &str| BackendError::InvalidValue {
        key: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("an S3 URL starts with `s3://`"))?;
    let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
    let bucket = bucket.trim_end_matches('/');
    if bucket.is_empty() || bucket.contains('/') {
        return Err(bad("an S3 URL is `s3://<bucket>?<setting>=<value>&...`"));
    }
    let mut settings = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("each setting is `<name>=<value>`"))?;
        // `+` is a space, as in any query string (`%2B` is a `+`).
        let value = gust_events::percent_decode_strict(&value.replace('+', " "))
            .ok_or_else(|| bad("bad percent-encoding"))?;
        settings.push((key.to_string(), value));
    }
    Ok((bucket.to_string(), settings))
}

impl S3Blobs {
    /// Connects to the bucket named by `url` and checks that it can be
    /// listed; the bucket must exist.
    ///
    /// `url` is `s3://<bucket>?<setting>=<value>&...`; settings are
    /// object_store's S3 options by name, e.g. `endpoint` (e.g.
    /// `http://127.0.0.1:9000` for a local server; `http` is allowed when
    /// the endpoint says so), `region`, `access_key_id`,
    /// `secret_access_key`, `session_token`. Anything not in the URL comes
    /// from the `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, ...); the
    /// region defaults to `us-east-1`.
    ///
    /// `namespace` keeps apps apart in one bucket: it is the first segment of
    /// every key. It must be a valid container name (no `/`).
    ///
    /// Installs rustls' `ring` crypto provider as the process default if
    /// none is installed yet (the HTTP client needs one).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        check_container_name(namespace)?;
        let (bucket, settings) = parse_url(url)?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread may win the race; either provider works.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        for (key, value) in &settings {
            let key: AmazonS3ConfigKey = key.parse().map_err(|e| BackendError::InvalidValue {
                key: url.to_string(),
                reason: format!("unknown S3 setting `{key}`: {e}"),
            })?;
            builder = builder.with_config(key, value);
        }
        if builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        if builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store = builder
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| engine(format!("cannot set up the client for `{url}`: {e}")))?;
        let blobs = Self {
            store: Arc::new(store),
            bucket,
            namespace: namespace.to_string(),
        };
        blobs
            .store
            .list_paginated(
                Some(&format!("{namespace}/")),
                PaginatedListOptions {
                    max_keys: Some(1),
                    ..PaginatedListOptions::default()
                },
            )
            .await
            .map_err(|e| engine(format!("cannot list bucket `{}`: {e}", blobs.bucket)))?;
        Ok(blobs)
    }

    /// The container called `name`, as its concrete type.
    pub fn open_container(&self, name: &str) -> Result<S3Container> {
        check_container_name(name)?;
        Ok(S3Container {
            store: self.store.clone(),
            bucket: self.bucket.clone(),
            prefix: format!("{}/{name}/", self.namespace),
        })
    }
}

impl BlobProvider for S3Blobs {
    fn container(&self, name: &str) -> Result<Arc<dyn BlobContainer>> {
        Ok(Arc::new(self.open_container(name)?))
    }
}

/// One container: the keys under `<namespace>/<container>/`.
pub struct S3Container {
    store: Arc<AmazonS3>,
    bucket: String,
    /// `<namespace>/<container>/`.
    prefix: String,
}

impl S3Container {
    /// The object path of blob `name`, which is checked.
    fn path(&self, name: &str) -> Result<Path> {
        check_blob_name(name)?;
        Path::parse(format!("{}{name}", self.prefix)).map_err(|e| BackendError::InvalidValue {
            key: name.to_string(),
            reason: e.to_string(),
        })
    }

    fn info(&self, meta: &ObjectMeta) -> Option<BlobInfo> {
        let name = meta.location.as_ref().strip_prefix(&self.prefix)?;
        let modified = SystemTime::from(meta.last_modified);
        let etag = meta.e_tag.as_deref().unwrap_or("").trim_matches('"');
        Some(BlobInfo {
            name: name.to_string(),
            version: format!("{etag}@{}", meta.last_modified.timestamp_millis()),
            size: meta.size,
            modified: Some(modified),
            complete: true,
        })
    }

    fn failed(&self, what: &str, name: &str, e: object_store::Error) -> BackendError {
        engine(format!(
            "cannot {what} `{}{name}` in bucket `{}`: {e}",
            self.prefix, self.bucket
        ))
    }
}

#[async_trait]
impl BlobContainer for S3Container {
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_with_info(name).await?.map(|(_, data)| data))
    }

    async fn get_with_info(&self, name: &str) -> Result<Option<(BlobInfo, Vec<u8>)>> {
        let path = self.path(name)?;
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("get", name, e)),
        };
        let info = self.info(&result.meta);
        let data = result
            .bytes()
            .await
            .map_err(|e| self.failed("read", name, e))?;
        let info = info.ok_or_else(|| engine(format!("S3 returned another key for `{name}`")))?;
        Ok(Some((info, data.to_vec())))
    }

    async fn put(&self, name: &str, data: Vec<u8>) -> Result<()> {
        let path = self.path(name)?;
        self.store
            .put(&path, PutPayload::from(data))
            .await
            .map_err(|e| self.failed("put", name, e))?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        let path = self.path(name)?;
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.failed("look up", name, e)),
        }
        self.store
            .delete(&path)
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
        let key_prefix = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut page_token = None;
        while out.len() < limit {
            let page = self
                .store
                .list_paginated(
                    Some(&key_prefix),
                    PaginatedListOptions {
                        offset: after.map(|a| format!("{}{a}", self.prefix)),
                        max_keys: Some((limit - out.len()).min(MAX_KEYS)),
                        page_token: page_token.take(),
                        ..PaginatedListOptions::default()
                    },
                )
                .await
                .map_err(|e| {
                    engine(format!(
                        "cannot list `{key_prefix}` in bucket `{}`: {e}",
                        self.bucket
                    ))
                })?;
            out.extend(
                page.result
                    .objects
                    .iter()
                    .filter_map(|meta| self.info(meta))
                    .filter(|i| after.is_none_or(|a| i.name.as_str() > a)),
            );
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let (bucket, settings) = parse_url(
            "s3://data?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&access_key_id=a+b",
        )
        .unwrap();
        assert_eq!(bucket, "data");
        assert_eq!(
            settings,
            [
                ("endpoint".to_string(), "http://127.0.0.1:9000".to_string()),
                ("region".to_string(), "eu-west-1".to_string()),
                ("access_key_id".to_string(), "a b".to_string()),
            ]
        );
        assert_eq!(parse_url("s3://data").unwrap().1, []);
        assert!(parse_url("http://data").is_err());
        assert!(parse_url("s3://?x=1").is_err());
        assert!(parse_url("s3://a/b").is_err());
        assert!(parse_url("s3://a?x").is_err());
    }
}
