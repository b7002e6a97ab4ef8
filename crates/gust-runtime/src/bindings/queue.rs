//! `gust:function/queue`: sending to the queues a function declared.

use std::collections::BTreeMap;

use super::generated::gust::function::queue::Host;
use crate::state::HostState;

/// Largest message a function may send.
const MAX_MESSAGE: usize = 4 << 20;

impl Host for HostState {
    async fn send(
        &mut self,
        binding: String,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> wasmtime::Result<Result<String, String>> {
        let Some(queue) = self.env.queues.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("queue", &binding)));
        };
        if body.len() > MAX_MESSAGE {
            return Ok(Err(format!(
                "message is {} bytes; the limit is {MAX_MESSAGE}",
                body.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert(
            "content-type".to_string(),
            content_type.unwrap_or_else(|| "application/octet-stream".into()),
        );
        metadata.insert(
            "traceparent".to_string(),
            self.invocation.outgoing_traceparent(),
        );
        Ok(queue.send(body, metadata).await.map_err(|e| e.to_string()))
    }
}
