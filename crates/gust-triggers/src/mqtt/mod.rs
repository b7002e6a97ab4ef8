//! The `mqtt` trigger and the embedded MQTT broker.
//!
//! Devices publish to an MQTT broker: by default the one Gust embeds
//! ([`EmbeddedBroker`], rumqttd, MQTT 3.1.1 and 5 on one port,
//! `127.0.0.1:1884`), or an external broker a function names with
//! `broker = "mqtt://host:port"`. Each function with an mqtt trigger
//! subscribes to one topic filter (`+` and `#` wildcards) and receives every
//! matching message as a CloudEvent:
//!
//! | attribute | value |
//! |---|---|
//! | `type` | `gust.mqtt.message` |
//! | `source` | `/gust/mqtt` |
//! | `subject` | the MQTT topic the device published to |
//! | `data` | the payload, unchanged |
//! | `id` | a fresh 128-bit id per received message |
//! | extension `mqtttopic` | the MQTT topic (same as `subject`) |
//! | extension `traceparent` | a new W3C trace context |
//! | attempt | 1 on the first delivery, then counted by the queue |
//!
//! # Delivery and durability
//!
//! Each function's [`MqttTrigger`] runs two parts:
//!
//! 1. a **subscriber**: an MQTT client with a stable client id per app and
//!    function ([`client_id`]), a persistent session (`clean_session =
//!    false`) and manual acknowledgements. For every PUBLISH it receives it
//!    first appends the message (as a CloudEvent) to a durable Gust queue,
//!    [`queue_name`] `mqtt--<function>`, and only once that write returned
//!    does it send the PUBACK to the broker (in order, as MQTT requires);
//! 2. a **queue consumer** ([`crate::queue::QueueConsumer`]) that runs the
//!    function on the queued events with the function's concurrency, retry
//!    policy and dead-letter queue (`mqtt--<function>-deadletter`).
//!
//! So a QoS 1 message the broker acknowledged to the device is, at every
//! moment, either in the broker's session for the subscriber (delivered or
//! not yet acknowledged) or in the durable queue. While Gust is stopped the
//! session keeps collecting messages (on the embedded broker only while the
//! process lives, see below; an external broker keeps them as it is
//! configured to); the next start delivers them.
//!
//! Delivery is **at least once**: a PUBACK lost on a broken connection, or a
//! crash between the queue write and the PUBACK, makes the broker send the
//! message again and the function may see it twice (each copy gets its own
//! event id). QoS 0 subscriptions go the same way but the broker does not
//! redeliver them: they are at most once up to the queue write.
//!
//! ## What can still be lost
//!
//! rumqttd keeps sessions, subscriptions and messages **in memory only**.
//! If the whole host process dies (crash, SIGKILL, power loss) after the
//! broker sent PUBACK to the device but before the subscriber wrote the
//! message to the durable queue, that message is lost: the window is one
//! broker-to-subscriber hop plus a queue write (milliseconds under normal
//! load, longer when the subscriber is disconnected or behind). Likewise a
//! message published while the trigger is stopped survives only as long as
//! the broker process does, and only within the broker's per-filter
//! retention ([`EmbeddedBrokerConfig::max_segment_size`] x
//! [`EmbeddedBrokerConfig::max_segment_count`] bytes; older messages of a
//! subscriber that is far behind are dropped). Use an external broker with
//! persistence (e.g. Mosquitto with `persistence true`) through `broker =
//! "mqtt://..."` where that window matters.

mod filter;
mod trigger;

use thiserror::Error;

pub use filter::{matching_functions, topic_matches, validate_filter};
pub use gust_backends::mqtt::{
    BrokerError, BrokerUrl, DEFAULT_LISTEN, EmbeddedBroker, EmbeddedBrokerConfig,
};
pub use trigger::{
    EVENT_SOURCE, EVENT_TYPE, MqttKind, MqttTrigger, MqttTriggerSettings, client_id, message_event,
    queue_name,
};

/// What went wrong with the MQTT broker or an mqtt trigger.
#[derive(Debug, Error)]
pub enum MqttError {
    /// A broker URL is wrong, or the embedded broker could not start.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A topic filter is malformed.
    #[error("invalid MQTT topic filter `{filter}`: {why}")]
    Filter {
        /// The filter as written.
        filter: String,
        /// What is wrong.
        why: String,
    },
    /// Trigger settings are invalid.
    #[error("invalid mqtt trigger settings for function `{function}`: {why}")]
    Settings {
        /// The function (empty when not known yet).
        function: String,
        /// What is wrong, naming the key.
        why: String,
    },
}
