//! `gust:function/topic`: publishing events to the topics a function declared.

use super::generated::gust::function::topic::Host;
use crate::state::HostState;

/// Largest event payload a function may publish.
const MAX_EVENT: usize = 1 << 20;

impl Host for HostState {
    async fn publish(
        &mut self,
        binding: String,
        event_type: String,
        subject: Option<String>,
        data: Vec<u8>,
        content_type: Option<String>,
    ) -> wasmtime::Result<Result<String, String>> {
        let (Some(topic), Some(publisher)) = (
            self.env.topics.get(&binding).cloned(),
            self.env.publisher.clone(),
        ) else {
            return Ok(Err(self.env.refuse("topic", &binding)));
        };
        if data.len() > MAX_EVENT {
            return Ok(Err(format!(
                "event data is {} bytes; the limit is {MAX_EVENT}",
                data.len()
            )));
        }
        if event_type.is_empty() {
            return Ok(Err("an event needs a type".into()));
        }
        let mut event = gust_events::Event::new(
            format!("/gust/function/{}", self.env.name),
            event_type,
            data,
        );
        event.subject = subject;
        event.datacontenttype = content_type;
        event.set_extension("traceparent", self.invocation.outgoing_traceparent());
        Ok(publisher.publish(&topic, event).await)
    }
}
