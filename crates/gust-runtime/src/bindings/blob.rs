//! `gust:function/blob`: the blob containers a function declared.

use super::generated::gust::function::blob::Host;
use crate::state::HostState;

/// Largest blob a function may write in one call.
const MAX_BLOB: usize = 64 << 20;
/// Most names one list returns.
const MAX_LIST: u32 = 10_000;

impl Host for HostState {
    async fn read(
        &mut self,
        binding: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        let Some(container) = self.env.blobs.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("blob", &binding)));
        };
        Ok(container.get(&name).await.map_err(|e| e.to_string()))
    }

    async fn write(
        &mut self,
        binding: String,
        name: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let Some(container) = self.env.blobs.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("blob", &binding)));
        };
        if data.len() > MAX_BLOB {
            return Ok(Err(format!(
                "blob is {} bytes; the limit is {MAX_BLOB}",
                data.len()
            )));
        }
        Ok(container.put(&name, data).await.map_err(|e| e.to_string()))
    }

    async fn delete(
        &mut self,
        binding: String,
        name: String,
    ) -> wasmtime::Result<Result<bool, String>> {
        let Some(container) = self.env.blobs.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("blob", &binding)));
        };
        Ok(container.delete(&name).await.map_err(|e| e.to_string()))
    }

    async fn list(
        &mut self,
        binding: String,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, String>> {
        let Some(container) = self.env.blobs.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("blob", &binding)));
        };
        Ok(container
            .list(&prefix, limit.min(MAX_LIST) as usize)
            .await
            .map_err(|e| e.to_string()))
    }
}
