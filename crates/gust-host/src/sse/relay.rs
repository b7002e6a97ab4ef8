//! Carries `[[sse]]` events between nodes over the app's [`Broadcast`]
//! provider, so a client connected to any node sees the events accepted on
//! every node.
//!
//! Each hub publishes the events it records on the channel `sse/<topic>`
//! (one message per event, tagged with the hub's origin id) and listens on
//! the channels of the topics it watches; what another hub sent is recorded
//! like a local event (same replay history, same `Last-Event-ID` resume),
//! what it sent itself is skipped (it was recorded when published).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gust_backends::Broadcast;
use gust_events::Event;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`Relay::ready`] waits for the subscriptions to be in place.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// Pause before subscribing again after the subscription failed or ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);

/// Called with every event another node sent for a topic.
pub(super) type Deliver = Arc<dyn Fn(&str, Event) + Send + Sync>;

/// The broadcast side of one hub.
pub(super) struct Relay {
    broadcast: Arc<dyn Broadcast>,
    /// Tells this hub's messages from other hubs'.
    origin: String,
    listeners: Mutex<HashMap<String, Listener>>,
}

/// The subscription task of one topic.
struct Listener {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The broadcast channel of `topic`'s events.
fn channel(topic: &str) -> String {
    format!("sse/{topic}")
}

impl Relay {
    /// A relay over `broadcast` with a fresh origin id.
    pub(super) fn new(broadcast: Arc<dyn Broadcast>) -> Self {
        Self {
            broadcast,
            origin: gust_events::new_id(),
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// Listens on the channels of `topics` (handing what other hubs send to
    /// `deliver`) and stops listening on the others. Needs a tokio runtime;
    /// without one nothing is listened to.
    pub(super) fn listen(&self, topics: &[String], deliver: &Deliver) {
        let mut listeners = self.listeners.lock().expect("relay lock");
        listeners.retain(|topic, _| topics.contains(topic));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("server-sent events stay on this node: no async runtime to listen on");
            return;
        };
        for topic in topics {
            if listeners.contains_key(topic) {
                continue;
            }
            let (ready, subscribed) = watch::channel(false);
            let task = runtime.spawn(listen(
                self.broadcast.clone(),
                self.origin.clone(),
                topic.clone(),
                deliver.clone(),
                ready,
            ));
            listeners.insert(topic.clone(), Listener { task, subscribed });
        }
    }

    /// Waits (at most [`READY_WITHIN`]) until every listened channel is
    /// subscribed, so events other nodes publish from now on arrive.
    pub(super) async fn ready(&self) {
        let waiting: Vec<watch::Receiver<bool>> = {
            let listeners = self.listeners.lock().expect("relay lock");
            listeners.values().map(|l| l.subscribed.clone()).collect()
        };
        let all = futures::future::join_all(
            waiting
                .into_iter()
                .map(|mut w| async move { w.wait_for(|s| *s).await.is_ok() }),
        );
        if tokio::time::timeout(READY_WITHIN, all).await.is_err() {
            tracing::warn!(
                "server-sent events: the broadcast subscriptions were not confirmed within {READY_WITHIN:?}; other nodes' events may arrive late"
            );
        }
    }

    /// Sends `events` of `topic` to the other hubs. A failure is logged:
    /// the events still reach this node's clients.
    pub(super) async fn send(&self, topic: &str, events: &[Arc<Event>]) {
        let channel = channel(topic);
        for event in events {
            let payload = encode(&self.origin, event);
            if let Err(e) = self.broadcast.publish(&channel, payload).await {
                tracing::warn!(
                    "server-sent event {} of topic `{topic}` did not reach the other nodes: {e}",
                    event.id
                );
            }
        }
    }

    /// Stops listening on every channel.
    pub(super) fn stop(&self) {
        self.listeners.lock().expect("relay lock").clear();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Subscribes to `topic`'s channel (again after it fails or ends) and hands
/// other hubs' events to `deliver`.
async fn listen(
    broadcast: Arc<dyn Broadcast>,
    origin: String,
    topic: String,
    deliver: Deliver,
    ready: watch::Sender<bool>,
) {
    let channel = channel(&topic);
    loop {
        match broadcast.subscribe(&channel).await {
            Ok(mut messages) => {
                ready.send_replace(true);
                while let Some(payload) = messages.next().await {
                    match decode(&payload) {
                        Some((from, _)) if from == origin => {}
                        Some((_, event)) => deliver(&topic, event),
                        None => tracing::warn!(
                            "server-sent events: dropped a malformed message on `{channel}`"
                        ),
                    }
                }
            }
            Err(e) => tracing::warn!("server-sent events: cannot subscribe to `{channel}`: {e}"),
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

/// One event on the wire: a JSON header line (origin and the event's
/// attributes as queue metadata), a newline, then the data bytes.
fn encode(origin: &str, event: &Event) -> Vec<u8> {
    let header = serde_json::json!({
        "origin": origin,
        "attributes": gust_events::to_metadata(event),
    });
    let mut out = serde_json::to_vec(&header).expect("json");
    out.push(b'\n');
    out.extend_from_slice(&event.data);
    out
}

/// The origin and event of a message made by [`encode`].
fn decode(payload: &[u8]) -> Option<(String, Event)> {
    let split = payload.iter().position(|b| *b == b'\n')?;
    #[derive(serde::Deserialize)]
    struct Header {
        origin: String,
        attributes: BTreeMap<String, String>,
    }
    let header: Header = serde_json::from_slice(&payload[..split]).ok()?;
    let event = gust_events::from_metadata(&header.attributes, payload[split + 1..].to_vec(), 1)?;
    Some((header.origin, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_wire() {
        let mut event = Event::new("/src", "t.x", b"line\nwith newline".to_vec());
        event.subject = Some("job-1".into());
        event.datacontenttype = Some("text/plain".into());
        event.set_extension("tenant", "acme");
        let (origin, mut back) = decode(&encode("node-a", &event)).unwrap();
        assert_eq!(origin, "node-a");
        back.extensions.sort();
        event.extensions.sort();
        assert_eq!(back, event);
        assert!(decode(b"not json\nx").is_none());
    }
}
