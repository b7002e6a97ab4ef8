//! The mqtt trigger: a persistent-session subscriber that moves messages
//! into a durable queue before acknowledging them, and a queue consumer
//! that runs the function.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gust_backends::Queue;
use gust_events::{Event, to_metadata};
use gust_manifest::RetryPolicy;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, Publish, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{MqttError, validate_filter};
use crate::dispatch::{Dispatcher, Shutdown};
use crate::queue::{QueueConsumer, QueueSettings};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings};
use gust_backends::mqtt::BrokerUrl;
use gust_manifest::{EventTriggerKind, Function, Trigger};

/// CloudEvents `type` of every MQTT message event.
pub const EVENT_TYPE: &str = "gust.mqtt.message";
/// CloudEvents `source` of every MQTT message event.
pub const EVENT_SOURCE: &str = "/gust/mqtt";

/// Largest MQTT packet the subscriber accepts (payload plus topic).
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Requests (mostly PUBACKs) the subscriber may queue towards the broker;
/// far above any broker's in-flight window, so acks never wait for room.
const REQUEST_CAPACITY: usize = 4096;
/// Publishes handed from the network loop to the queue writer.
const HANDOFF_CAPACITY: usize = 4096;
/// Most publishes written to the queue in one batch.
const MAX_BATCH: usize = 512;
/// Lease of one queued message while the function runs (renewed).
const VISIBILITY: Duration = Duration::from_secs(30);
/// How long a stopping subscriber may take to flush acks and disconnect.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// `trigger = { mqtt = { topic = "devices/+/telemetry", qos = 1 } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTriggerSettings {
    /// MQTT topic filter; `+` matches one level, `#` the rest.
    pub topic: String,
    /// Subscription QoS: 1 (default, not lost once the broker accepted
    /// it) or 0 (at most once).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// An external broker (`mqtt://[user:password@]host[:port]`) to consume
    /// from instead of the embedded one.
    #[serde(default)]
    pub broker: Option<String>,
    /// Messages handled at once by this function (default 64; the
    /// dispatcher may still limit the function further). It also bounds
    /// how many queued messages one receive leases, so it sets throughput.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_qos() -> u8 {
    1
}

fn default_concurrency() -> u32 {
    64
}

impl MqttTriggerSettings {
    /// Settings for `topic` with the defaults (QoS 1, embedded broker).
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            qos: default_qos(),
            broker: None,
            concurrency: default_concurrency(),
        }
    }

    /// Reads the settings of `function` as written in `gust.toml`
    /// (`Trigger::Event { kind: Mqtt, settings }`) and validates them.
    pub fn from_table(function: &str, table: &toml::Table) -> Result<Self, MqttError> {
        let settings: Self =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| MqttError::Settings {
                    function: function.to_string(),
                    why: e.message().to_string(),
                })?;
        settings.validate(function)?;
        Ok(settings)
    }

    /// Checks the filter, QoS, concurrency and broker URL.
    pub fn validate(&self, function: &str) -> Result<(), MqttError> {
        self.check().map_err(|invalid| MqttError::Settings {
            function: function.to_string(),
            why: invalid.message,
        })
    }
}

impl Settings for MqttTriggerSettings {
    const KIND: &'static str = "mqtt";
    const HELP: &'static str = "mqtt triggers take `topic = \"devices/+/telemetry\"`, optional `qos = 0|1`, `concurrency = 64` and `broker = \"mqtt://host:1883\"`";

    fn check(&self) -> Result<(), Invalid> {
        if let Err(e) = validate_filter(&self.topic) {
            return Err(Invalid::new("topic", format!("`topic`: {e}")));
        }
        if self.qos > 1 {
            return Err(Invalid::new(
                "qos",
                format!(
                    "`qos` is 0 or 1, not {} (QoS 2 is not supported; QoS 1 with Gust's queue \
                     already keeps every message)",
                    self.qos
                ),
            ));
        }
        if self.concurrency == 0 {
            return Err(Invalid::new(
                "concurrency",
                "`concurrency` must be at least 1",
            ));
        }
        if let Some(url) = &self.broker
            && let Err(e) = BrokerUrl::parse(url)
        {
            return Err(Invalid::new("broker", format!("`broker`: {e}")));
        }
        Ok(())
    }
}

/// The durable queue between the broker and `function`: `mqtt--<function>`
/// (its dead letters go to `mqtt--<function>-deadletter`).
pub fn queue_name(function: &str) -> String {
    format!("mqtt--{function}")
}

/// The MQTT client id of `function`'s subscriber: stable across restarts so
/// the broker keeps its session (`gust-<app>-<function>`, with characters
/// other than letters, digits, `-`, `_` and `.` replaced by `_`).
pub fn client_id(app: &str, function: &str) -> String {
    format!("gust-{app}-{function}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The CloudEvent an MQTT message on `topic` becomes (before queueing).
pub fn message_event(topic: &str, payload: Vec<u8>) -> Event {
    let mut event = Event::new(EVENT_SOURCE, EVENT_TYPE, payload);
    event.subject = Some(topic.to_string());
    event.set_extension("mqtttopic", topic);
    event
}

/// One function triggered by an MQTT topic filter.
///
/// The host builds one per function with an mqtt trigger and runs it until
/// shutdown; see the [module docs](crate::mqtt) for the delivery guarantee.
pub struct MqttTrigger {
    /// The app (part of the stable client id).
    pub app: String,
    /// The function to run.
    pub function: String,
    /// Trigger settings.
    pub settings: MqttTriggerSettings,
    /// The broker used when `settings.broker` names none: the embedded
    /// broker's [`client_url`](super::EmbeddedBroker::client_url).
    pub broker: BrokerUrl,
    /// Retry policy before dead-lettering.
    pub retry: RetryPolicy,
    /// The durable queue, named [`queue_name`]`(function)` by convention.
    pub queue: Arc<dyn Queue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
}

impl MqttTrigger {
    /// Subscribes and runs the function on every message until `shutdown`;
    /// then acknowledges what was already queued, disconnects (the broker
    /// keeps the session) and waits for running handlers to settle.
    ///
    /// Fails at once on invalid settings; broker connection failures are
    /// logged and retried with backoff.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), MqttError> {
        self.run_notifying(shutdown, None).await
    }

    /// [`run`](Self::run), sending on `subscribed` once the broker has
    /// acknowledged the subscription (so a host can report itself ready only
    /// when messages published from then on reach the function).
    pub async fn run_notifying(
        self,
        mut shutdown: Shutdown,
        subscribed: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(), MqttError> {
        self.settings.validate(&self.function)?;
        let broker = match &self.settings.broker {
            Some(url) => BrokerUrl::parse(url)?,
            None => self.broker.clone(),
        };
        let consumer = QueueConsumer {
            function: self.function.clone(),
            trigger: QueueSettings {
                queue: self.queue.name().to_string(),
                batch_size: self.settings.concurrency.clamp(1, 64),
                concurrency: self.settings.concurrency,
                visibility: VISIBILITY,
            },
            retry: self.retry.clone(),
            queue: self.queue.clone(),
            dispatcher: self.dispatcher.clone(),
            filter: None,
        };
        let consuming = tokio::spawn(consumer.run(shutdown.clone()));
        let subscriber = Subscriber {
            client_id: client_id(&self.app, &self.function),
            filter: self.settings.topic.clone(),
            qos: if self.settings.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            broker,
            queue: self.queue.clone(),
            subscribed,
        };
        let subscribing = tokio::spawn(subscriber.run(shutdown.clone()));
        let abort = subscribing.abort_handle();
        shutdown.requested().await;
        if tokio::time::timeout(STOP_GRACE, subscribing).await.is_err() {
            tracing::warn!(function = %self.function, "MQTT subscriber did not stop in time");
            abort.abort();
        }
        let _ = consuming.await;
        Ok(())
    }
}

/// The MQTT side: receives publishes, queues them, then acknowledges them.
struct Subscriber {
    client_id: String,
    filter: String,
    qos: QoS,
    broker: BrokerUrl,
    queue: Arc<dyn Queue>,
    /// Told once, at the first granted subscription.
    subscribed: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The current connection's number. The network loop bumps it (and drops
/// queued PUBACKs with `EventLoop::clean`) under the lock whenever the
/// connection is lost or made, and the writer sends a PUBACK only under the
/// lock and only for a publish of the current connection: an ack is never
/// sent on a later connection, where its packet id names another message.
type Generation = Arc<Mutex<u64>>;

impl Subscriber {
    async fn run(mut self, shutdown: Shutdown) {
        let mut options = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some((user, password)) = &self.broker.credentials {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let generation: Generation = Arc::new(Mutex::new(0));
        let (handoff, received) = mpsc::channel(HANDOFF_CAPACITY);
        let writer = tokio::spawn(write_loop(
            received,
            self.queue.clone(),
            client.clone(),
            generation.clone(),
            shutdown.clone(),
        ));
        let mut current = 0;
        let mut failures = 0u32;
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                    failures = 0;
                    current = {
                        let mut g = generation.lock().expect("generation lock");
                        *g += 1;
                        *g
                    };
                    tracing::info!(
                        client_id = %self.client_id, broker = %self.broker,
                        session_present = ack.session_present, "MQTT subscriber connected"
                    );
                    // Harmless when the session already has it.
                    if let Err(e) = client.try_subscribe(&self.filter, self.qos) {
                        tracing::warn!(error = %e, "could not request the MQTT subscription");
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                    // Fails only while stopping: the broker redelivers it.
                    let _ = handoff.send((current, publish)).await;
                }
                Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(filter = %self.filter, broker = %self.broker, "the MQTT broker refused the subscription");
                    } else if let Some(subscribed) = self.subscribed.take() {
                        let _ = subscribed.send(());
                    }
                }
                Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    {
                        let mut g = generation.lock().expect("generation lock");
                        *g += 1;
                        current = *g;
                        eventloop.clean();
                    }
                    if shutdown.is_requested() {
                        break;
                    }
                    failures += 1;
                    let delay = Duration::from_millis(100 * 2u64.pow(failures.min(6)))
                        .min(Duration::from_secs(5));
                    tracing::warn!(
                        client_id = %self.client_id, broker = %self.broker, error = %e,
                        retry_in = ?delay, "MQTT subscriber connection failed"
                    );
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.requested() => break,
                    }
                }
            }
        }
        writer.abort();
    }
}

/// Moves received publishes into the queue in batches, then acknowledges
/// them in order; on shutdown stops taking publishes and disconnects.
async fn write_loop(
    mut received: mpsc::Receiver<(u64, Publish)>,
    queue: Arc<dyn Queue>,
    client: AsyncClient,
    generation: Generation,
    mut shutdown: Shutdown,
) {
    let mut batch: Vec<(u64, Publish)> = Vec::with_capacity(MAX_BATCH);
    'outer: loop {
        batch.clear();
        let first = tokio::select! {
            p = received.recv() => p,
            () = shutdown.requested() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match received.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let messages = batch
                .iter()
                .map(|(_, p)| {
                    let event = message_event(&p.topic, p.payload.to_vec());
                    let metadata = to_metadata(&event);
                    (event.data, metadata)
                })
                .collect();
            match queue.send_batch(messages).await {
                Ok(_) => break,
                Err(e) => {
                    // Not acknowledged: the broker keeps them in the session.
                    tracing::warn!(queue = %queue.name(), error = %e, retry_in = ?delay, "could not queue MQTT messages");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.requested() => break 'outer,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        acknowledge(&client, &generation, &batch).await;
    }
    // Acks already requested go out before the DISCONNECT.
    let _ = client.try_disconnect();
}

/// Sends the PUBACKs of `batch` in order, skipping publishes of an earlier
/// connection (the broker sends those again).
async fn acknowledge(client: &AsyncClient, generation: &Generation, batch: &[(u64, Publish)]) {
    for (connection, publish) in batch {
        if publish.qos == QoS::AtMostOnce {
            continue;
        }
        let mut tries = 0;
        loop {
            let pushed = {
                let g = generation.lock().expect("generation lock");
                if *g != *connection {
                    break;
                }
                client.try_ack(publish)
            };
            match pushed {
                Ok(()) => break,
                Err(e) if tries > 5_000 => {
                    tracing::warn!(error = %e, "could not acknowledge an MQTT message; the broker will send it again");
                    return;
                }
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

/// How long starting an mqtt trigger waits for its subscription to be
/// granted before the app is reported ready anyway.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `mqtt` trigger kind: owns its settings ([`MqttTriggerSettings`]).
pub struct MqttKind;

impl MqttKind {
    fn settings(function: &Function) -> Result<MqttTriggerSettings, TriggerError> {
        MqttTriggerSettings::of(function)
    }

    /// Whether `function` listens on the embedded broker (an mqtt trigger
    /// that names no broker of its own).
    pub fn uses_embedded_broker(function: &Function) -> bool {
        MqttKind.serves(&function.trigger)
            && Self::settings(function).is_ok_and(|s| s.broker.is_none())
    }
}

impl TriggerKind for MqttKind {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Mqtt,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        Self::settings(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        Description::from_settings(self.name(), "topic", function)
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let f = cx.function;
            let settings = Self::settings(f)?;
            let broker = match (settings.broker.as_deref(), cx.mqtt_broker) {
                (Some(url), _) => BrokerUrl::parse(url).map_err(|e| cx.error(e))?,
                (None, Some(embedded)) => embedded.clone(),
                (None, None) => return Err(cx.error("the embedded MQTT broker is not running")),
            };
            let trigger = MqttTrigger {
                app: cx.app.to_string(),
                function: f.name.clone(),
                settings,
                broker,
                retry: f.retry.clone(),
                queue: cx.queue(&queue_name(&f.name)).await?,
                dispatcher: cx.dispatcher.clone(),
            };
            let function = f.name.clone();
            let (subscribed, granted) = tokio::sync::oneshot::channel();
            let mut started = Started::default();
            cx.spawn(&mut started, {
                let stop = cx.shutdown.clone();
                async move {
                    if let Err(e) = trigger.run_notifying(stop, Some(subscribed)).await {
                        tracing::error!(function = %function, "mqtt trigger stopped: {e}");
                    }
                }
            });
            // Ready only once messages published from now on reach the
            // function; a broker that is down is retried in the background.
            if !matches!(
                tokio::time::timeout(SUBSCRIBE_WAIT, granted).await,
                Ok(Ok(()))
            ) {
                tracing::warn!(function = %f.name, "MQTT subscription not granted within {SUBSCRIBE_WAIT:?}; still trying in the background");
            }
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_manifest_name_the_bad_key() {
        let table: toml::Table = toml::from_str(r#"topic = "devices/+/telemetry""#).unwrap();
        let s = MqttTriggerSettings::from_table("ingest", &table).unwrap();
        assert_eq!(s, MqttTriggerSettings::new("devices/+/telemetry"));
        assert_eq!(s.qos, 1);

        let table: toml::Table = toml::from_str(
            r#"topic = "a/#"
qos = 0
broker = "mqtt://127.0.0.1:1883"
concurrency = 4"#,
        )
        .unwrap();
        let s = MqttTriggerSettings::from_table("f", &table).unwrap();
        assert_eq!((s.qos, s.concurrency), (0, 4));

        for (text, needle) in [
            (r#"topic = "a/#/b""#, "`topic`"),
            (
                r#"topic = "a"
qos = 2"#,
                "`qos` is 0 or 1",
            ),
            (
                r#"topic = "a"
broker = "http://x""#,
                "`broker`",
            ),
            (r#"qos = 1"#, "topic"),
            (
                r#"topic = "a"
topics = "b""#,
                "topics",
            ),
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            let e = MqttTriggerSettings::from_table("ingest", &table)
                .unwrap_err()
                .to_string();
            assert!(e.contains("function `ingest`") && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn client_ids_are_stable_and_safe() {
        assert_eq!(client_id("app", "fn"), "gust-app-fn");
        assert_eq!(client_id("my app", "a/b+#"), "gust-my_app-a_b__");
        assert_eq!(queue_name("ingest"), "mqtt--ingest");
    }

    #[test]
    fn events_carry_the_topic() {
        let e = message_event("devices/d1/telemetry", b"21.5".to_vec());
        assert_eq!(e.ty, EVENT_TYPE);
        assert_eq!(e.source, EVENT_SOURCE);
        assert_eq!(e.subject.as_deref(), Some("devices/d1/telemetry"));
        assert_eq!(e.extension("mqtttopic"), Some("devices/d1/telemetry"));
        assert!(e.extension("traceparent").is_some());
        assert_eq!(e.data, b"21.5");
        assert_ne!(message_event("t", vec![]).id, e.id);
    }
}
