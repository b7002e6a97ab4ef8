//! End-to-end: `examples/iot-stream` under a real `gust up` with its
//! embedded MQTT broker. Simulated devices send thousands of readings (most
//! over MQTT with QoS 1, some in batches over HTTP); the test computes the
//! per-device per-minute aggregates and the anomalies itself and checks
//! that the query API reports exactly those.

mod common;
mod engine_probe;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Devices `d00`..; the last [`HTTP_DEVICES`] post over HTTP.
const DEVICES: usize = 24;
const HTTP_DEVICES: usize = 4;
/// Readings per device.
const READINGS: usize = 125;
/// Readings per HTTP request.
const BATCH: usize = 25;
/// 2025-01-01T00:00:00Z in Unix milliseconds: readings carry fixed times.
const BASE_MS: i64 = 1_735_689_600_000;
/// The example's rules.
const THRESHOLD: f64 = 80.0;
const SUDDEN_CHANGE: f64 = 10.0;

/// The example's manifest, its sources pointing back at the example's
/// crates.
fn manifest() -> String {
    let example = repo().join("examples/iot-stream");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    manifest.replace("source = \"functions/", &functions)
}

/// The example's manifest in a temporary app folder.
fn app() -> TestApp {
    TestApp::new(&manifest())
}

#[derive(Debug, Clone)]
struct Reading {
    seq: u64,
    ts: i64,
    temperature: f64,
}

impl Reading {
    fn json(&self) -> Value {
        json!({ "seq": self.seq, "ts": self.ts, "temperature": self.temperature })
    }
}

fn device(d: usize) -> String {
    format!("d{d:02}")
}

/// Smooth, device-specific temperatures (steps below 1 °C) with injected
/// anomalies: `d03` overheats gradually (threshold only), `d07` spikes once
/// (threshold and two sudden changes), `d21` (HTTP) steps up by 15 °C
/// (one sudden change).
fn fleet() -> Vec<Vec<Reading>> {
    const OVERHEAT: [f64; 13] = [
        27.0, 35.0, 43.0, 51.0, 59.0, 67.0, 75.0, 81.0, 86.5, 88.25, 84.0, 79.0, 71.0,
    ];
    (0..DEVICES)
        .map(|d| {
            (0..READINGS)
                .map(|i| {
                    let base = 15.0 + d as f64 * 0.5;
                    let mut t = base + 3.0 * (i as f64 * 0.3 + d as f64).sin();
                    if d == 3 && (40..40 + OVERHEAT.len()).contains(&i) {
                        t = OVERHEAT[i - 40];
                    }
                    if d == 3 && i >= 40 + OVERHEAT.len() && i < 60 {
                        t = 71.0 - (i - 52) as f64 * 7.5; // cools down, below 10 °C steps
                        t = t.max(base + 3.0 * (i as f64 * 0.3 + d as f64).sin());
                    }
                    if d == 7 && i == 100 {
                        t = 95.5;
                    }
                    if d == 21 && i >= 70 {
                        t += 15.0;
                    }
                    Reading {
                        seq: i as u64 + 1,
                        ts: BASE_MS + i as i64 * 10_000 + d as i64 * 1_000,
                        temperature: (t * 100.0).round() / 100.0,
                    }
                })
                .collect()
        })
        .collect()
}

/// `(device, minute) -> (count, min, max, sum)`, computed here.
type Minutes = BTreeMap<(String, i64), (u64, f64, f64, f64)>;

fn expected_minutes(fleet: &[Vec<Reading>]) -> Minutes {
    let mut out = Minutes::new();
    for (d, readings) in fleet.iter().enumerate() {
        for r in readings {
            let minute = r.ts.div_euclid(60_000) * 60;
            let e = out.entry((device(d), minute)).or_insert((
                0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                0.0,
            ));
            e.0 += 1;
            e.1 = e.1.min(r.temperature);
            e.2 = e.2.max(r.temperature);
            e.3 += r.temperature;
        }
    }
    out
}

/// Alert ids `<device>/<seq>/<rule>` the rules must raise, in send order.
fn expected_alerts(fleet: &[Vec<Reading>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (d, readings) in fleet.iter().enumerate() {
        let mut previous: Option<f64> = None;
        for r in readings {
            if r.temperature >= THRESHOLD {
                out.insert(format!("{}/{}/threshold", device(d), r.seq));
            }
            if previous.is_some_and(|p| (r.temperature - p).abs() >= SUDDEN_CHANGE) {
                out.insert(format!("{}/{}/sudden-change", device(d), r.seq));
            }
            previous = Some(r.temperature);
        }
    }
    out
}

/// Publishes `messages` with QoS 1 from one client and waits for every ack.
fn publish_mqtt(port: u16, messages: Vec<(String, String)>) {
    let total = messages.len();
    let mut options = rumqttc::MqttOptions::new("test-fleet", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut connection) = rumqttc::Client::new(options, 256);
    let publisher = std::thread::spawn(move || {
        for (topic, payload) in messages {
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    for event in connection.iter() {
        match event {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                acked += 1;
                if acked == total {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("device connection failed: {e}"),
        }
    }
    let client = publisher.join().unwrap();
    let _ = client.disconnect();
}

#[test]
fn telemetry_from_mqtt_and_http_becomes_minute_aggregates_and_alerts() {
    let app = app();
    scenario(&app, &[]);
}

/// Drives the example in `app` under `gust up` with `flags`: devices send
/// over MQTT and HTTP, the queries report the aggregates and alerts the
/// test computes.
fn scenario(app: &TestApp, flags: &[&str]) {
    let started = Instant::now();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--quiet", "--no-watch", "--mqtt-listen", &listen];
    args.extend(flags);
    let host = up(app.path(), &args);
    let url = host.url.clone();
    eprintln!("gust up ready after {:?}", started.elapsed());

    // Before any reading: empty answers, not errors.
    let r = get(&format!("{url}/api/devices"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["totals"]["readings"], 0);
    let r = get(&format!("{url}/api/devices/d00/minutes"), &[]);
    assert_eq!(r.status, 404, "{r:?}");
    // The HTTP door refuses what is not a reading.
    let r = send(
        "POST",
        &format!("{url}/api/devices/d00/telemetry"),
        &[],
        b"{oops",
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = send(
        "POST",
        &format!("{url}/api/devices/d00/telemetry"),
        &[],
        b"[1, 2]",
    );
    assert_eq!(r.status, 400, "{r:?}");

    let fleet = fleet();
    let total = DEVICES * READINGS;
    let t0 = Instant::now();

    // HTTP gateways: one thread per device, batches in order.
    let gateways: Vec<_> = (DEVICES - HTTP_DEVICES..DEVICES)
        .map(|d| {
            let batches: Vec<String> = fleet[d]
                .chunks(BATCH)
                .map(|b| Value::from_iter(b.iter().map(Reading::json)).to_string())
                .collect();
            let url = format!("{url}/api/devices/{}/telemetry", device(d));
            std::thread::spawn(move || {
                for batch in batches {
                    let n = batch.matches("\"seq\"").count();
                    let r = send(
                        "POST",
                        &url,
                        &[("content-type", "application/json")],
                        batch.as_bytes(),
                    );
                    assert_eq!(r.status, 202, "{r:?}");
                    assert_eq!(r.json()["accepted"], n);
                }
            })
        })
        .collect();

    // MQTT devices, round-robin from one connection; then some duplicates
    // (a device resending after a lost ack) and broken payloads.
    let mut messages: Vec<(String, String)> = (0..READINGS)
        .flat_map(|i| {
            let fleet = &fleet;
            (0..DEVICES - HTTP_DEVICES).map(move |d| {
                (
                    format!("devices/{}/telemetry", device(d)),
                    fleet[d][i].json().to_string(),
                )
            })
        })
        .collect();
    for r in &fleet[5][..10] {
        messages.push(("devices/d05/telemetry".into(), r.json().to_string()));
    }
    for payload in [
        json!({ "seq": 1, "ts": BASE_MS }).to_string(),
        json!({ "seq": 2, "ts": BASE_MS, "temperature": "hot" }).to_string(),
        json!({ "seq": 3, "ts": BASE_MS, "temperature": 999.0 }).to_string(),
        "not json at all".to_string(),
    ] {
        messages.push(("devices/broken-1/telemetry".into(), payload));
    }
    publish_mqtt(port, messages);
    for g in gateways {
        g.join().expect("HTTP gateway");
    }
    let sent = t0.elapsed();
    eprintln!("{total} readings sent in {sent:?}");

    // Wait until the stream consumer stored every reading.
    let mut last = Value::Null;
    let done = eventually(Duration::from_secs(60), || {
        let r = get(&format!("{url}/api/devices"), &[]);
        last = r.json();
        last["totals"]["readings"] == total && last["totals"]["rejected"] == 3
    });
    assert!(done, "not all readings processed: {}", last["totals"]);
    let processed = t0.elapsed();
    eprintln!(
        "{total} readings processed after {processed:?} ({:.0} readings/s end to end)",
        total as f64 / processed.as_secs_f64()
    );
    assert_eq!(last["totals"]["devices"], DEVICES, "{}", last["totals"]);
    for (d, info) in last["devices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(info["device"], device(d));
        assert_eq!(info["readings"], READINGS, "{info}");
        assert_eq!(info["last_seq"], READINGS, "{info}");
        assert_eq!(info["last_ts"], fleet[d][READINGS - 1].ts, "{info}");
    }

    // The aggregates match the computation here, minute by minute.
    let expected = expected_minutes(&fleet);
    let mut seen = 0;
    for d in 0..DEVICES {
        let r = get(&format!("{url}/api/devices/{}/minutes", device(d)), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        let body = r.json();
        for m in body["minutes"].as_array().unwrap() {
            let minute = m["minute"].as_i64().unwrap();
            let (count, min, max, sum) = expected
                .get(&(device(d), minute))
                .unwrap_or_else(|| panic!("unexpected minute {m}"));
            assert_eq!(m["count"].as_u64(), Some(*count), "{m}");
            assert_eq!(m["min"].as_f64(), Some(*min), "{m}");
            assert_eq!(m["max"].as_f64(), Some(*max), "{m}");
            let avg = m["avg"].as_f64().unwrap();
            assert!((avg - sum / *count as f64).abs() < 1e-9, "{m}");
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len(), "minutes reported vs computed");
    let first = get(&format!("{url}/api/devices/d00/minutes?to=1735689600"), &[]).json();
    assert_eq!(first["minutes"][0]["start"], "2025-01-01T00:00:00Z");
    assert_eq!(first["minutes"].as_array().unwrap().len(), 1);

    // Exactly the anomalies the rules give, each alerted once.
    let expected = expected_alerts(&fleet);
    for injected in [
        "d03/48/threshold",
        "d03/49/threshold",
        "d03/50/threshold",
        "d03/51/threshold",
        "d07/101/threshold",
        "d07/101/sudden-change",
        "d07/102/sudden-change",
        "d21/71/sudden-change",
    ] {
        assert!(
            expected.contains(injected),
            "{injected} not in {expected:?}"
        );
    }
    assert_eq!(expected.len(), 8, "{expected:?}");
    let mut alerts = BTreeSet::new();
    let complete = eventually(Duration::from_secs(20), || {
        let r = get(&format!("{url}/api/alerts"), &[]);
        alerts = r.json()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        alerts.len() >= expected.len()
    });
    assert!(complete, "alerts so far: {alerts:?}");
    std::thread::sleep(Duration::from_millis(500));
    let r = get(&format!("{url}/api/alerts"), &[]).json();
    assert_eq!(r["alerts"].as_array().unwrap().len(), expected.len(), "{r}");
    assert_eq!(alerts, expected);
    let spike = get(
        &format!("{url}/api/alerts?device=d07&rule=sudden-change"),
        &[],
    )
    .json();
    let spike = spike["alerts"].as_array().unwrap();
    assert_eq!(spike.len(), 2, "{spike:?}");
    assert_eq!(spike[0]["temperature"], 95.5);
    assert_eq!(spike[1]["previous"], 95.5);
    eprintln!("done after {:?}", started.elapsed());
}

/// Readings the ingest functions append to `telemetry`: every reading of
/// the fleet, the ten resent ones of `d05` and the three broken payloads
/// that are JSON objects (the fourth is not JSON and never appended).
const APPENDED: usize = DEVICES * READINGS + 10 + 3;

/// The same scenario with the stream (and the topic) on NATS JetStream
/// and the sql database on PostgreSQL; then the telemetry records are
/// read from the stream's JetStream streams and the rows from the
/// database's schema.
#[test]
fn on_nats_and_postgres_the_records_and_rows_are_in_the_engines() {
    let started = Instant::now();
    let name = engine_probe::unique_app("iot-stream");
    let app = TestApp::new(&engine_probe::rename_app(&manifest(), &name));
    let nats = engine_probe::NatsCleanup::new(&name);
    let pg = engine_probe::PgCleanup::new(&name);
    scenario(&app, &engine_flags());
    let data = app.path().join(".gust/data");
    for file in ["streams.redb", "queues.redb", "sql"] {
        assert!(!data.join(file).exists(), "{file} on the embedded engine");
    }
    check_nats(&name, &nats);
    check_postgres(&pg);
    drop(nats);
    drop(pg);
    eprintln!("done after {:?}", started.elapsed());
}

fn engine_flags() -> Vec<&'static str> {
    vec![
        "--nats",
        engine_probe::NATS,
        "--postgres",
        engine_probe::POSTGRES,
    ]
}

/// Every reading is a record of `telemetry` on JetStream, keyed by its
/// device, one device's records in one partition and in send order.
fn check_nats(name: &str, nats: &engine_probe::NatsCleanup) {
    let streams = nats.streams();
    let fleet = fleet();
    let mut total = 0;
    let mut partition_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in 0..4 {
        let stream = engine_probe::nats_partition_stream(name, "telemetry", p);
        assert!(streams.contains(&stream), "{stream} not in {streams:?}");
        let records = engine_probe::nats_records(&stream).unwrap();
        eprintln!("{stream}: {} records", records.len());
        for r in records {
            let reading: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(reading["device"], r.key.as_str(), "{reading}");
            assert_eq!(
                *partition_of.entry(r.key.clone()).or_insert(p),
                p,
                "{reading}"
            );
            if r.key == "broken-1" {
                assert_eq!(reading["via"], "mqtt", "{reading}");
            } else {
                let d: usize = r.key[1..].parse().unwrap();
                let i = reading["seq"].as_u64().unwrap() as usize - 1;
                assert_eq!(reading["ts"], fleet[d][i].ts, "{reading}");
                assert_eq!(reading["temperature"], fleet[d][i].temperature, "{reading}");
                let via = if d >= DEVICES - HTTP_DEVICES {
                    "http"
                } else {
                    "mqtt"
                };
                assert_eq!(reading["via"], via, "{reading}");
                seen.entry(r.key.clone()).or_default().push(i as u64 + 1);
            }
            total += 1;
        }
    }
    assert!(total >= APPENDED, "{total} records, {APPENDED} appended");
    for d in 0..DEVICES {
        let seqs = &seen[&device(d)];
        let mut want: Vec<u64> = (1..=READINGS as u64).collect();
        if d == 5 {
            want.extend(1..=10);
        }
        if total == APPENDED {
            assert_eq!(seqs, &want, "{}: records in send order", device(d));
        } else {
            let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
            assert_eq!(distinct.len(), READINGS, "{}", device(d));
        }
    }
    eprintln!("{total} telemetry records on JetStream");
}

/// The database `iot` is the schema `gust_<app>_iot` with the rows the
/// queries reported.
fn check_postgres(pg: &engine_probe::PgCleanup) {
    let s = format!("{}_iot", pg.schema);
    assert!(pg.schemas().contains(&s), "{:?}", pg.schemas());
    let count = |sql: &str| engine_probe::psql(sql).trim().parse::<u64>().unwrap();
    assert_eq!(
        count(&format!("SELECT count(*) FROM {s}.readings")),
        (DEVICES * READINGS) as u64
    );
    assert_eq!(count(&format!("SELECT count(*) FROM {s}.rejected")), 3);
    assert_eq!(count(&format!("SELECT count(*) FROM {s}.alerts")), 8);
    let fleet = fleet();
    let expected = expected_minutes(&fleet);
    assert_eq!(
        count(&format!("SELECT count(*) FROM {s}.minute_stats")),
        expected.len() as u64
    );
    assert_eq!(
        count(&format!("SELECT sum(count) FROM {s}.minute_stats")),
        (DEVICES * READINGS) as u64
    );
    let rows = engine_probe::psql_rows(&format!(
        "SELECT device, readings, last_seq, last_ts FROM {s}.devices ORDER BY device"
    ));
    assert_eq!(rows.len(), DEVICES);
    for (d, row) in rows.iter().enumerate() {
        let want = [
            device(d),
            READINGS.to_string(),
            READINGS.to_string(),
            fleet[d][READINGS - 1].ts.to_string(),
        ];
        assert_eq!(row, &want);
    }
    let ids = engine_probe::psql(&format!("SELECT id FROM {s}.alerts ORDER BY id"));
    let ids: BTreeSet<String> = ids.lines().map(str::to_string).collect();
    assert_eq!(ids, expected_alerts(&fleet));
}
