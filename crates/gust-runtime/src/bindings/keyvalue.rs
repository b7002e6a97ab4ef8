//! `wasi:keyvalue` (store, atomics, batch) over the declared kv bindings.
//!
//! `open(identifier)` succeeds only for a binding name the function declared
//! with `{ kv = "..." }`; anything else is `access-denied`.

use std::sync::Arc;

use gust_backends::{BackendError, KeyValue};
use wasmtime::component::Resource;

use super::generated::wasi::keyvalue::{atomics, batch, store};
use crate::state::HostState;

/// An open bucket: the store behind a declared binding.
pub struct Bucket {
    store: Arc<dyn KeyValue>,
}

/// Keys returned per `list-keys` page.
const PAGE: usize = 1000;

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

fn convert(e: BackendError) -> store::Error {
    match e {
        BackendError::NoSuchResource(_) => store::Error::NoSuchStore,
        other => store::Error::Other(other.to_string()),
    }
}

impl HostState {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Arc<dyn KeyValue>> {
        Ok(self.table.get(bucket)?.store.clone())
    }
}

impl store::Host for HostState {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let Some(store) = self.env.kv.get(&identifier).cloned() else {
            let name = self.env.name.clone();
            self.env.log.log(
                &name,
                crate::LogLevel::Warn,
                &format!("kv store `{identifier}` is not a declared binding; access denied"),
            );
            return Ok(Err(store::Error::AccessDenied));
        };
        Ok(Ok(self.table.push(Bucket { store })?))
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get(&key).await.map_err(convert))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set(&key, value).await.map_err(convert))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete(&key).await.map_err(convert))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let store = self.bucket(&bucket)?;
        Ok(store.exists(&key).await.map_err(convert))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let store = self.bucket(&bucket)?;
        Ok(store
            .list_keys(cursor, PAGE)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(convert))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let store = self.bucket(&bucket)?;
        Ok(store.increment(&key, delta).await.map_err(convert))
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let store = self.bucket(&bucket)?;
        Ok(store.get_many(keys).await.map_err(convert))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.set_many(key_values).await.map_err(convert))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let store = self.bucket(&bucket)?;
        Ok(store.delete_many(keys).await.map_err(convert))
    }
}
