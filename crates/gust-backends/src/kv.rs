//! Key-value stores (`wasi:keyvalue`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;

/// One page of keys from [`KeyValue::list_keys`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// Keys in ascending order.
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` when this was the last page.
    pub cursor: Option<u64>,
}

/// A named key-value store (one bucket).
#[async_trait]
pub trait KeyValue: Send + Sync {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `value` under `key` (durably, before returning).
    async fn set(&self, key: &str, value: Vec<u8>) -> Result<()>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Whether `key` has a value.
    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }
    /// Keys in order, a page at a time, starting at position `cursor`.
    async fn list_keys(&self, cursor: Option<u64>, page_size: usize) -> Result<KeyPage>;
    /// Atomically adds `delta` to the number stored (as decimal text) under
    /// `key`, starting from 0, and returns the new value.
    async fn increment(&self, key: &str, delta: u64) -> Result<u64>;
    /// Values for several keys.
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<(String, Vec<u8>)>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.get(&key).await?;
            out.push(value.map(|v| (key, v)));
        }
        Ok(out)
    }
    /// Stores several pairs in one durable write.
    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<()>;
    /// Removes several keys in one durable write.
    async fn delete_many(&self, keys: Vec<String>) -> Result<()>;
    /// Atomically stores `new` under `key` if the value there is `expected`
    /// (`None`: only if `key` has no value). `true` when it stored `new`;
    /// `false` (and nothing changed) when the value was something else.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool>;
}

/// Opens key-value stores by resource name.
pub trait KeyValueProvider: Send + Sync {
    /// The store called `name`, created on first use.
    fn open(&self, name: &str) -> Result<Arc<dyn KeyValue>>;
}
