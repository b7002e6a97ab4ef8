//! `gust:function/queue`: sending to the queues a function declared.

use std::collections::BTreeMap;

use super::generated::gust::function::queue::Host;
use crate::log::LogLevel;
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
            let name = self.env.name.clone();
            let why = format!("`{binding}` is not a queue binding of this function");
            self.env
                .log
                .log(&name, LogLevel::Warn, &format!("queue send refused: {why}"));
            return Ok(Err(why));
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
        Ok(queue.send(body, metadata).await.map_err(|e| e.to_string()))
    }
}
