//! `gust:function/table`: documents in the tables a function declared.

use super::generated::gust::function::table::{Document, Host};
use crate::state::HostState;

/// Largest document a function may store.
const MAX_DOCUMENT: usize = 4 << 20;
/// Most documents one scan returns.
const MAX_SCAN: u32 = 1_000;

fn document(d: gust_backends::Document) -> Document {
    Document {
        key: d.key,
        body: d.body,
        version: d.version,
    }
}

impl Host for HostState {
    async fn get(
        &mut self,
        binding: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<Document>, String>> {
        let Some(table) = self.env.tables.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("table", &binding)));
        };
        Ok(table
            .get(&key)
            .await
            .map(|d| d.map(document))
            .map_err(|e| e.to_string()))
    }

    async fn put(
        &mut self,
        binding: String,
        key: String,
        body: Vec<u8>,
    ) -> wasmtime::Result<Result<u64, String>> {
        let Some(table) = self.env.tables.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("table", &binding)));
        };
        if body.len() > MAX_DOCUMENT {
            return Ok(Err(format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT}",
                body.len()
            )));
        }
        if key.is_empty() {
            return Ok(Err("a document key cannot be empty".into()));
        }
        Ok(table.put(&key, body).await.map_err(|e| e.to_string()))
    }

    async fn delete(
        &mut self,
        binding: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, String>> {
        let Some(table) = self.env.tables.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("table", &binding)));
        };
        Ok(table.delete(&key).await.map_err(|e| e.to_string()))
    }

    async fn scan(
        &mut self,
        binding: String,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Document>, String>> {
        let Some(table) = self.env.tables.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("table", &binding)));
        };
        Ok(table
            .scan(&prefix, after.as_deref(), limit.min(MAX_SCAN) as usize)
            .await
            .map(|docs| docs.into_iter().map(document).collect())
            .map_err(|e| e.to_string()))
    }
}
