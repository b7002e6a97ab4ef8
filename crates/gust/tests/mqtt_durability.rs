//! End-to-end durability of the mqtt trigger: a device publishes 5,000 QoS 1
//! messages (paced over a few seconds) while the host is SIGKILLed and
//! restarted; every message reaches the function at least once. The duplicate count is printed (`--nocapture`).
//!
//! The broker is a Mosquitto started by this test (its own port, no limit on
//! queued messages, like a production broker sized for its devices), which
//! keeps the trigger's persistent session while the host is down. The
//! trigger acknowledges a message to the broker only once it is stored in the
//! app's durable queue, so nothing acknowledged is lost; with the embedded
//! broker the broker itself dies with the host, which this test does not
//! cover (see README).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Messages the device publishes.
const MESSAGES: usize = 5_000;
/// Messages handled before the kill.
const KILL_AFTER: usize = 500;

/// A Mosquitto of this test's own, stopped on drop.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 0\n"
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (Debian package mosquitto)");
        let up = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "mosquitto did not start on port {port}");
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn body(i: usize) -> String {
    format!("m{i:05}")
}

/// Publishes every message with QoS 1 and returns once the broker has
/// acknowledged them all.
fn publish_all(port: u16) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut options = rumqttc::MqttOptions::new("durability-device", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(options, 256);
        let publisher = std::thread::spawn(move || {
            for i in 0..MESSAGES {
                // Paced (about 2,000 a second), so messages are still
                // arriving when the host is killed and while it is down.
                if i % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                client
                    .publish(
                        format!("plant/d{}/reading", i % 16),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        body(i),
                    )
                    .unwrap();
            }
            client
        });
        let mut acked = 0;
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    acked += 1;
                    if acked == MESSAGES {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("device connection failed: {e}"),
            }
        }
        let _ = publisher.join().unwrap().disconnect();
        started.elapsed()
    })
}

#[test]
fn sigkill_while_mqtt_messages_arrive_loses_none() {
    let started = Instant::now();
    let broker = Mosquitto::start();
    let app = TestApp::new(&format!(
        r#"
[app]
name = "mqtt-durability"
[[function]]
name = "consumer"
source = "probe.wasm"
trigger = {{ mqtt = {{ topic = "plant/+/reading", broker = "mqtt://127.0.0.1:{}", concurrency = 16 }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
"#,
        broker.port
    ));
    app.add_component("probe.wasm", &guest("event-probe"));
    let dir = app.path();
    let args = ["--quiet", "--no-watch"];
    let handled = || logged_bodies(dir, "consumer");

    let mut first = up(dir, &args);
    // The trigger's session exists once a first message gets through.
    let subscribed = eventually(Duration::from_secs(30), || {
        let mut options = rumqttc::MqttOptions::new("warmup", "127.0.0.1", broker.port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(options, 8);
        client
            .publish(
                "plant/warmup/reading",
                rumqttc::QoS::AtLeastOnce,
                false,
                "warmup",
            )
            .unwrap();
        for event in connection.iter().take(10) {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = event {
                break;
            }
        }
        let _ = client.disconnect();
        eventually(Duration::from_secs(2), || handled().1.contains("warmup"))
    });
    assert!(
        subscribed,
        "the trigger never received; stderr:\n{}",
        first.stderr()
    );

    let device = publish_all(broker.port);
    assert!(
        eventually(Duration::from_secs(60), || handled().1.len() > KILL_AFTER),
        "fewer than {KILL_AFTER} handled; stderr:\n{}",
        first.stderr()
    );
    let status = Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(eventually(Duration::from_secs(10), || !first.alive()));
    let (_, at_kill) = handled();
    let publish_time = device.join().unwrap();
    assert!(
        at_kill.len() <= MESSAGES,
        "all were processed before the kill came: the test proves nothing"
    );

    let restarted = Instant::now();
    let mut second = up(dir, &args);
    let all_done = eventually(Duration::from_secs(120), || {
        handled().1.len() > MESSAGES // every message plus the warm-up one
    });
    let drain_time = restarted.elapsed();
    let stderr = second.stderr();
    assert_eq!(
        second.stop(),
        Some(0),
        "second host did not stop cleanly:\n{stderr}"
    );

    let Tally {
        lost, duplicates, ..
    } = tally(dir, "seen", (0..MESSAGES).map(body));
    println!(
        "mqtt durability: {MESSAGES} QoS 1 messages acknowledged by the broker in {:.2}s; \
         {} handled when SIGKILLed; restart drained the rest in {:.2}s; lost {}; \
         duplicates {duplicates}; whole test {:.1}s",
        publish_time.as_secs_f64(),
        at_kill.len(),
        drain_time.as_secs_f64(),
        lost.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        lost.is_empty(),
        "{} of {MESSAGES} were never processed (first: {:?}); all handled: {all_done}\nstderr:\n{stderr}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(all_done);
}
