//! End-to-end: the stream and mqtt triggers through a real `gust up`.
//! Records go in with `gust stream append` and through a function's stream
//! binding; MQTT messages come from a device (rumqttc, QoS 1) connected to
//! the embedded broker. The consuming functions are `event-probe`, which
//! logs `handled <data>`.

mod common;

use std::time::Duration;

use common::*;

fn handled(app: &TestApp, function: &str) -> Vec<String> {
    function_logs(app.path(), function)
        .lines()
        .filter_map(|l| l.split("handled ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn stream_records_reach_the_function_in_order_per_key() {
    let app = TestApp::new(
        r#"
[app]
name = "streams"
[[function]]
name = "reader"
source = "probe.wasm"
trigger = { stream = { stream = "telemetry", start = "earliest", batch_size = 10 } }
bindings = { seen = { kv = "seen" } }
[[function]]
name = "producer"
source = "data.wasm"
trigger = { http = { route = "/data/{*rest}", auth = "anonymous" } }
bindings = { out = { stream = "telemetry" } }
"#,
    );
    app.add_component("probe.wasm", &guest("event-probe"));
    app.add_component("data.wasm", &guest("data-probe"));
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    for (key, data) in [
        ("d1", "d1-1"),
        ("d2", "d2-1"),
        ("d1", "d1-2"),
        ("d1", "d1-3"),
    ] {
        let (code, out, err) = gust(
            &[
                "stream",
                "append",
                "telemetry",
                "--key",
                key,
                "--data",
                data,
            ],
            app.path(),
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("partition "), "{out}");
    }
    let r = send(
        "POST",
        &format!("{}/data/append/d2", host.url),
        &[],
        b"d2-2",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["offset"].as_u64().is_some(), "{}", r.body);

    assert!(
        eventually(Duration::from_secs(20), || handled(&app, "reader").len()
            >= 5),
        "reader saw {:?}",
        handled(&app, "reader")
    );
    let seen = handled(&app, "reader");
    let of = |key: &str| -> Vec<&str> {
        seen.iter()
            .filter(|s| s.starts_with(key))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(of("d1"), ["d1-1", "d1-2", "d1-3"]);
    assert_eq!(of("d2"), ["d2-1", "d2-2"]);

    let (code, out, _) = gust(&["stream", "show", "telemetry"], app.path());
    assert_eq!(code, 0);
    assert_eq!(out.matches("partition ").count(), 4, "{out}");

    // A bad stream trigger setting stops `gust up` with the function's name.
    let bad = TestApp::new(
        "[app]\nname = \"bad\"\n[[function]]\nname = \"r\"\nsource = \"p.wasm\"\ntrigger = { stream = { stream = \"s\", start = \"sometime\" } }\n",
    );
    bad.add_component("p.wasm", &guest("event-probe"));
    let (code, _, err) = gust(&["up", "--no-watch", "--listen", "127.0.0.1:0"], bad.path());
    assert_ne!(code, 0);
    assert!(err.contains("function `r`"), "{err}");
}

#[test]
fn mqtt_qos1_messages_from_a_device_reach_the_function() {
    let port = free_port();
    let app = TestApp::new(
        r#"
[app]
name = "devices"
[[function]]
name = "telemetry"
source = "probe.wasm"
trigger = { mqtt = { topic = "devices/+/telemetry" } }
bindings = { seen = { kv = "seen" } }
"#,
    );
    app.add_component("probe.wasm", &guest("event-probe"));
    let listen = format!("127.0.0.1:{port}");
    let _host = up(
        app.path(),
        &["--quiet", "--no-watch", "--mqtt-listen", &listen],
    );

    const MESSAGES: usize = 200;
    let mut options = rumqttc::MqttOptions::new("test-device", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = rumqttc::Client::new(options, 64);
    let publisher = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            let topic = format!("devices/d{}/telemetry", i % 5);
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, format!("m{i:03}"))
                .unwrap();
        }
        client
            .publish(
                "devices/d1/status",
                rumqttc::QoS::AtLeastOnce,
                false,
                "ignored",
            )
            .unwrap();
        client
    });
    let mut acked = 0;
    for event in connection.iter() {
        match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                acked += 1;
                if acked == MESSAGES + 1 {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("device connection failed: {e}"),
        }
    }
    let client = publisher.join().unwrap();
    let _ = client.disconnect();

    assert!(
        eventually(Duration::from_secs(30), || handled(&app, "telemetry").len()
            >= MESSAGES),
        "function saw {} of {MESSAGES}",
        handled(&app, "telemetry").len()
    );
    let mut seen = handled(&app, "telemetry");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), MESSAGES, "every message once at least");
    assert!(!seen.contains(&"ignored".to_string()));
}
