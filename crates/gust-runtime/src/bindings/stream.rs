//! `gust:function/stream`: appending to the streams a function declared.

use std::collections::BTreeMap;

use super::generated::gust::function::stream::{Host, Position};
use crate::state::HostState;

/// Largest record a function may append.
const MAX_RECORD: usize = 1 << 20;

impl Host for HostState {
    async fn append(
        &mut self,
        binding: String,
        key: String,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> wasmtime::Result<Result<Position, String>> {
        let Some(stream) = self.env.streams.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("stream", &binding)));
        };
        if data.len() > MAX_RECORD {
            return Ok(Err(format!(
                "record is {} bytes; the limit is {MAX_RECORD}",
                data.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        if let Some(ct) = content_type {
            metadata.insert("content-type".to_string(), ct);
        }
        metadata.insert(
            "traceparent".to_string(),
            self.invocation.outgoing_traceparent(),
        );
        Ok(stream
            .append(&key, data, metadata)
            .await
            .map(|p| Position {
                partition: p.partition,
                offset: p.offset,
            })
            .map_err(|e| e.to_string()))
    }
}
