//! End to end: devices publish to the embedded broker (or Mosquitto), the
//! mqtt trigger queues each message durably and runs the function.
//!
//! Scale the throughput run with `GUST_MQTT_MESSAGES` (default 1000) and
//! set the functions' concurrency with `GUST_MQTT_CONCURRENCY` (default 64).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gust_backends::embedded::EmbeddedQueues;
use gust_backends::{Queue, QueueProvider};
use gust_events::{Event, Outcome};
use gust_manifest::{RetryPolicy, RetryStrategy};
use gust_triggers::mqtt::{
    BrokerUrl, EmbeddedBroker, EmbeddedBrokerConfig, MqttTrigger, MqttTriggerSettings, queue_name,
};
use gust_triggers::{Dispatcher, Shutdown};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records every (function, event); `rule` picks the outcome.
struct Functions {
    seen: Mutex<Vec<(String, Event)>>,
    rule: fn(&str, &Event) -> Outcome,
}

impl Functions {
    fn new(rule: fn(&str, &Event) -> Outcome) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            rule,
        })
    }

    /// Payloads `function` received (probes excluded), with attempts.
    fn received(&self, function: &str) -> Vec<(String, u32)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, e)| f == function && !e.data.starts_with(b"probe"))
            .map(|(_, e)| (String::from_utf8(e.data.clone()).unwrap(), e.attempt))
            .collect()
    }

    fn saw_probe(&self, function: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(f, e)| f == function && e.data.starts_with(b"probe"))
    }
}

impl Dispatcher for Functions {
    fn dispatch(
        &self,
        function: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        let outcome = (self.rule)(function, &event);
        self.seen
            .lock()
            .unwrap()
            .push((function.to_string(), event));
        Box::pin(async move { outcome })
    }
}

fn all_done(_: &str, _: &Event) -> Outcome {
    Outcome::Done
}

fn start_broker() -> EmbeddedBroker {
    EmbeddedBroker::start(EmbeddedBrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EmbeddedBrokerConfig::default()
    })
    .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        strategy: RetryStrategy::Fixed,
        max_attempts: 3,
        min: Duration::from_millis(50),
        max: Duration::from_millis(50),
    }
}

struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("trigger stops in time")
                .unwrap();
        }
    }
}

/// Starts one trigger per `(function, filter, probe topic)` and waits until
/// each subscription is live (a probe published to its probe topic came
/// through).
async fn start_triggers(
    app: &str,
    broker: &BrokerUrl,
    external: Option<&str>,
    queues: &EmbeddedQueues,
    functions: &Arc<Functions>,
    routes: &[(&str, &str, &str)],
) -> Running {
    let (stop, shutdown) = Shutdown::new();
    let mut tasks = Vec::new();
    for (function, filter, _) in routes {
        let mut settings = MqttTriggerSettings::new(*filter);
        settings.broker = external.map(str::to_string);
        if let Some(c) = std::env::var("GUST_MQTT_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            settings.concurrency = c;
        }
        let trigger = MqttTrigger {
            app: app.into(),
            function: function.to_string(),
            settings,
            broker: broker.clone(),
            retry: fast_retry(),
            queue: queues.queue(&queue_name(function)).await.unwrap(),
            dispatcher: functions.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            trigger.run(shutdown).await.unwrap();
        }));
    }
    let device = Device::connect(broker, &format!("{app}-prober")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for (function, _, probe_topic) in routes {
        while !functions.saw_probe(function) {
            assert!(Instant::now() < deadline, "{function} never subscribed");
            device
                .client
                .publish(*probe_topic, QoS::AtLeastOnce, false, b"probe".to_vec())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    device.close().await;
    Running { stop, tasks }
}

/// A device: a clean-session MQTT 3.1.1 client counting its PUBACKs.
struct Device {
    client: AsyncClient,
    acked: watch::Receiver<usize>,
    poller: JoinHandle<()>,
}

impl Device {
    async fn connect(broker: &BrokerUrl, id: &str) -> Self {
        let mut options = MqttOptions::new(id, &broker.host, broker.port);
        options
            .set_inflight(100)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (count, acked) = watch::channel(0usize);
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        count.send_modify(|n| *n += 1);
                    }
                    Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => panic!("device connection failed: {e}"),
                }
            }
        });
        Self {
            client,
            acked,
            poller,
        }
    }

    /// Publishes at QoS 1 and waits for every PUBACK.
    async fn publish_all(&mut self, messages: Vec<(String, String)>) {
        let start = *self.acked.borrow();
        let n = messages.len();
        for (topic, payload) in messages {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())
                .await
                .unwrap();
        }
        tokio::time::timeout(
            Duration::from_secs(30),
            self.acked.wait_for(|a| *a >= start + n),
        )
        .await
        .expect("broker acknowledged every publish")
        .unwrap();
    }

    async fn close(self) {
        self.client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.poller).await;
    }
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (distinct payloads, duplicate deliveries).
fn tally(received: &[(String, u32)]) -> (usize, usize) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (p, _) in received {
        *counts.entry(p.as_str()).or_default() += 1;
    }
    let dupes = counts.values().map(|c| c - 1).sum();
    (counts.len(), dupes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_reach_every_matching_function() {
    let total: usize = std::env::var("GUST_MQTT_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let broker = start_broker();
    let url = broker.client_url();
    let dir = tempfile::tempdir().unwrap();
    let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
    let functions = Functions::new(all_done);
    let running = start_triggers(
        "fleet",
        &url,
        None,
        &queues,
        &functions,
        &[
            (
                "telemetry",
                "devices/+/telemetry",
                "devices/probe/telemetry",
            ),
            ("status", "devices/+/status", "devices/probe/status"),
            ("everything", "devices/#", "devices/probe"),
        ],
    )
    .await;

    let devices = 10;
    let mut device = Device::connect(&url, "fleet-device").await;
    let mut messages: Vec<(String, String)> = (0..total)
        .map(|i| {
            (
                format!("devices/d{}/telemetry", i % devices),
                format!("t{i}"),
            )
        })
        .collect();
    messages.extend((0..20).map(|i| (format!("devices/d{i}/status"), format!("s{i}"))));
    messages.push(("other/d1/telemetry".into(), "nobody".into()));
    let started = Instant::now();
    device.publish_all(messages).await;
    let published = started.elapsed();
    wait_for("telemetry deliveries", 60, || {
        tally(&functions.received("telemetry")).0 >= total
    })
    .await;
    let elapsed = started.elapsed();
    wait_for("the other functions", 30, || {
        tally(&functions.received("status")).0 >= 20
            && tally(&functions.received("everything")).0 >= total + 20
    })
    .await;
    // Nothing else arrives late.
    tokio::time::sleep(Duration::from_millis(300)).await;
    device.close().await;
    running.stop().await;

    let telemetry = functions.received("telemetry");
    let (distinct, dupes) = tally(&telemetry);
    assert_eq!(distinct, total);
    assert!(telemetry.iter().all(|(p, _)| p.starts_with('t')));
    let status = functions.received("status");
    assert!(status.iter().all(|(p, _)| p.starts_with('s')));
    assert_eq!(tally(&status).0, 20);
    let everything = functions.received("everything");
    assert_eq!(tally(&everything).0, total + 20);
    assert!(everything.iter().all(|(p, _)| p != "nobody"));
    let all_dupes = dupes + tally(&status).1 + tally(&everything).1;
    println!(
        "mqtt: {total} QoS 1 messages: device -> broker PUBACK in {published:?}, -> function in \
         {elapsed:?} ({:.0} msg/s, 3 functions subscribed); duplicates: {all_dupes}",
        total as f64 / elapsed.as_secs_f64()
    );

    // The event a function sees.
    let seen = functions.seen.lock().unwrap();
    let (_, event) = seen
        .iter()
        .find(|(f, e)| f == "telemetry" && e.data == b"t7")
        .unwrap();
    assert_eq!(event.ty, "gust.mqtt.message");
    assert_eq!(event.source, "/gust/mqtt");
    assert_eq!(event.subject.as_deref(), Some("devices/d7/telemetry"));
    assert_eq!(event.extension("mqtttopic"), Some("devices/d7/telemetry"));
    assert!(event.extension("traceparent").is_some());
    assert_eq!(event.attempt, 1);
    let ids: HashSet<&str> = seen.iter().map(|(_, e)| e.id.as_str()).collect();
    assert_eq!(ids.len(), seen.len(), "event ids are unique");
}

fn poison_retries(_: &str, event: &Event) -> Outcome {
    if event.data == b"poison" {
        Outcome::Retry("sensor value out of range".into())
    } else {
        Outcome::Done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_retried_then_dead_lettered() {
    let broker = start_broker();
    let url = broker.client_url();
    let dir = tempfile::tempdir().unwrap();
    let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
    let functions = Functions::new(poison_retries);
    let running = start_triggers(
        "retry",
        &url,
        None,
        &queues,
        &functions,
        &[("check", "sensors/#", "sensors/probe")],
    )
    .await;
    let mut device = Device::connect(&url, "retry-device").await;
    device
        .publish_all(vec![
            ("sensors/a".into(), "poison".into()),
            ("sensors/b".into(), "fine".into()),
        ])
        .await;
    let queue: Arc<dyn Queue> = queues.queue(&queue_name("check")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.dead_letters(10).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    device.close().await;
    running.stop().await;

    let received = functions.received("check");
    let poison: Vec<u32> = received
        .iter()
        .filter(|(p, _)| p == "poison")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(poison, [1, 2, 3]);
    assert_eq!(received.iter().filter(|(p, _)| p == "fine").count(), 1);
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.body, b"poison");
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].reason.contains("sensor value out of range"),
        "{}",
        dead[0].reason
    );
    assert_eq!(
        dead[0]
            .message
            .metadata
            .get("ce-mqtttopic")
            .map(String::as_str),
        Some("sensors/a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_stopped_arrive_on_start() {
    let broker = start_broker();
    let url = broker.client_url();
    let dir = tempfile::tempdir().unwrap();
    let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
    let functions = Functions::new(all_done);
    let routes = [("ingest", "plant/+/temp", "plant/probe/temp")];
    // First run: creates the persistent session.
    let running = start_triggers("offline", &url, None, &queues, &functions, &routes).await;
    running.stop().await;

    let mut device = Device::connect(&url, "offline-device").await;
    let messages: Vec<(String, String)> = (0..200)
        .map(|i| (format!("plant/p{}/temp", i % 4), format!("m{i}")))
        .collect();
    device.publish_all(messages).await;
    device.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        functions.received("ingest").is_empty(),
        "delivered while stopped"
    );

    let (stop, shutdown) = Shutdown::new();
    let trigger = MqttTrigger {
        app: "offline".into(),
        function: "ingest".into(),
        settings: MqttTriggerSettings::new("plant/+/temp"),
        broker: url.clone(),
        retry: fast_retry(),
        queue: queues.queue(&queue_name("ingest")).await.unwrap(),
        dispatcher: functions.clone(),
    };
    let task = tokio::spawn(trigger.run(shutdown));
    wait_for("messages kept by the session", 20, || {
        tally(&functions.received("ingest")).0 >= 200
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let (distinct, dupes) = tally(&functions.received("ingest"));
    assert_eq!(distinct, 200);
    println!("mqtt persistent session: 200 messages delivered after restart, duplicates: {dupes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_devices_use_the_same_port() {
    let broker = start_broker();
    let url = broker.client_url();
    let dir = tempfile::tempdir().unwrap();
    let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
    let functions = Functions::new(all_done);
    let running = start_triggers(
        "v5",
        &url,
        None,
        &queues,
        &functions,
        &[("meter", "meters/+", "meters/probe")],
    )
    .await;
    let options = rumqttc::v5::MqttOptions::new("v5-device", &url.host, url.port);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
    client
        .publish(
            "meters/m1",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            b"42".to_vec(),
        )
        .await
        .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_)) =
                eventloop.poll().await.unwrap()
            {
                return;
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "MQTT 5 publish acknowledged");
    wait_for("the MQTT 5 message", 10, || {
        !functions.received("meter").is_empty()
    })
    .await;
    running.stop().await;
    assert_eq!(functions.received("meter"), [("42".to_string(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_broker_works_too() {
    // Mosquitto on 127.0.0.1:1883 when present; skipped otherwise.
    let mosquitto: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    if std::net::TcpStream::connect_timeout(&mosquitto, Duration::from_millis(200)).is_err() {
        eprintln!("no broker on {mosquitto}; skipped");
        return;
    }
    let run = gust_events::new_id();
    let external = "mqtt://127.0.0.1:1883";
    let url = BrokerUrl::parse(external).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
    let functions = Functions::new(all_done);
    let filter = format!("gust-test/{run}/+/telemetry");
    let probe = format!("gust-test/{run}/probe/telemetry");
    let app = format!("ext{}", &run[..8]);
    let running = start_triggers(
        &app,
        &url,
        Some(external),
        &queues,
        &functions,
        &[("ingest", &filter, &probe)],
    )
    .await;
    let mut device = Device::connect(&url, &format!("{app}-device")).await;
    device
        .publish_all(
            (0..100)
                .map(|i| {
                    (
                        format!("gust-test/{run}/d{}/telemetry", i % 5),
                        format!("x{i}"),
                    )
                })
                .collect(),
        )
        .await;
    wait_for("mosquitto deliveries", 20, || {
        tally(&functions.received("ingest")).0 >= 100
    })
    .await;
    device.close().await;
    running.stop().await;
    let (_, dupes) = tally(&functions.received("ingest"));
    println!("mqtt via mosquitto: 100 messages delivered, duplicates: {dupes}");

    // Drop the persistent session this test left in Mosquitto.
    let mut options = MqttOptions::new(
        gust_triggers::mqtt::client_id(&app, "ingest"),
        &url.host,
        url.port,
    );
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => {
                    client.disconnect().await.unwrap();
                }
                rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect) => return,
                _ => {}
            }
        }
    })
    .await;
}
