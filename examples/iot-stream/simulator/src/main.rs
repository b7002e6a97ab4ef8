//! A fleet of simulated temperature sensors for the `iot-stream` example.
//!
//! Each device sends readings `{"seq", "ts", "temperature"}` (`ts` in Unix
//! milliseconds, one reading every 10 simulated seconds, ending now) in
//! order. Most devices publish each reading over MQTT (QoS 1) to
//! `devices/<id>/telemetry`; the last `--http-devices` are "gateways" that
//! POST batches to `/api/devices/<id>/telemetry`. Two devices misbehave
//! unless `--no-anomalies` is given: `sim-001` overheats past 80 °C for a
//! while (threshold alerts) and `sim-002`'s reading jumps by 15 °C once
//! (one sudden-change alert).
//!
//! ```sh
//! cargo run --release -- --devices 20 --readings 150
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Simulated seconds between two readings of a device.
const STEP_MS: i64 = 10_000;

const HELP: &str = "\
iot-simulator: simulated devices sending telemetry to `gust up examples/iot-stream`

Options:
  --mqtt HOST:PORT     MQTT broker (default 127.0.0.1:1884, Gust's embedded one)
  --http URL           Gust's HTTP address (default http://127.0.0.1:7070)
  --devices N          devices (default 20)
  --http-devices N     of which send over HTTP (default 4)
  --readings N         readings per device (default 150)
  --batch N            readings per HTTP request (default 10)
  --pace-ms N          real milliseconds between rounds (default 0: as fast as possible)
  --no-anomalies       no overheating device, no sudden jump
  --seed N             random seed (default 7)";

/// Command-line settings.
struct Settings {
    mqtt: (String, u16),
    http: (String, u16),
    devices: usize,
    http_devices: usize,
    readings: usize,
    batch: usize,
    pace: Duration,
    anomalies: bool,
    seed: u64,
}

fn main() {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&settings) {
        eprintln!("simulator: {e}");
        std::process::exit(1);
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut s = Settings {
        mqtt: ("127.0.0.1".into(), 1884),
        http: ("127.0.0.1".into(), 7070),
        devices: 20,
        http_devices: 4,
        readings: 150,
        batch: 10,
        pace: Duration::ZERO,
        anomalies: true,
        seed: 7,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{arg}: not a number"));
        match arg.as_str() {
            "--mqtt" => s.mqtt = host_port(&value()?)?,
            "--http" => {
                let v = value()?;
                let rest = v
                    .strip_prefix("http://")
                    .ok_or("--http: only http:// URLs")?;
                s.http = host_port(rest.trim_end_matches('/'))?;
            }
            "--devices" => s.devices = number(value()?)? as usize,
            "--http-devices" => s.http_devices = number(value()?)? as usize,
            "--readings" => s.readings = number(value()?)? as usize,
            "--batch" => s.batch = number(value()?)?.max(1) as usize,
            "--pace-ms" => s.pace = Duration::from_millis(number(value()?)?),
            "--seed" => s.seed = number(value()?)?,
            "--no-anomalies" => s.anomalies = false,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    s.http_devices = s.http_devices.min(s.devices);
    Ok(s)
}

fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or(format!("`{text}`: expected HOST:PORT"))?;
    let port = port.parse().map_err(|_| format!("`{text}`: bad port"))?;
    Ok((host.to_string(), port))
}

/// One reading of one device.
struct Reading {
    seq: u64,
    ts: i64,
    temperature: f64,
}

/// Every device's readings: `(device id, readings in order)`.
fn generate(s: &Settings) -> Vec<(String, Vec<Reading>)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let start = now - s.readings as i64 * STEP_MS;
    let mut rng = s.seed.max(1);
    let mut random = move || {
        // xorshift64*: good enough for noise.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..s.devices)
        .map(|d| {
            let base = 18.0 + (d % 7) as f64;
            let mut t = base;
            let readings = (0..s.readings)
                .map(|i| {
                    t = (t + (random() - 0.5) * 1.6).clamp(base - 5.0, base + 5.0);
                    let mut temperature = t;
                    if s.anomalies && d == 1 {
                        // Overheating: ramps up 6 °C per reading from a third
                        // of the way in, holds above 80 °C, ramps down.
                        let k = i as f64 - s.readings as f64 / 3.0;
                        let heat = (k * 6.0).clamp(0.0, 66.0) - ((k - 20.0) * 6.0).clamp(0.0, 66.0);
                        temperature += heat;
                    }
                    if s.anomalies && d == 2 && i >= s.readings / 2 {
                        temperature += 15.0; // a sensor recalibrated wrongly
                    }
                    Reading {
                        seq: i as u64 + 1,
                        ts: start + i as i64 * STEP_MS + d as i64 * 37,
                        temperature: (temperature * 100.0).round() / 100.0,
                    }
                })
                .collect();
            (format!("sim-{d:03}"), readings)
        })
        .collect()
}

fn body(r: &Reading) -> serde_json::Value {
    json!({ "seq": r.seq, "ts": r.ts, "temperature": r.temperature })
}

fn run(s: &Settings) -> Result<(), String> {
    let fleet = generate(s);
    let (mqtt_devices, http_devices) = fleet.split_at(s.devices - s.http_devices);
    let started = Instant::now();

    // HTTP gateways, one thread each: batches in order, one at a time.
    let gateways: Vec<_> = http_devices
        .iter()
        .map(|(device, readings)| {
            let batches: Vec<String> = readings
                .chunks(s.batch)
                .map(|b| serde_json::Value::from_iter(b.iter().map(body)).to_string())
                .collect();
            let (device, http, pace) = (device.clone(), s.http.clone(), s.pace);
            let count = readings.len();
            std::thread::spawn(move || -> Result<usize, String> {
                for batch in &batches {
                    post(&http, &format!("/api/devices/{device}/telemetry"), batch)?;
                    std::thread::sleep(pace);
                }
                Ok(count)
            })
        })
        .collect();

    // MQTT devices share one connection; QoS 1 keeps each device's order.
    let mut published = 0;
    if !mqtt_devices.is_empty() {
        let mut options = rumqttc::MqttOptions::new("iot-simulator", &s.mqtt.0, s.mqtt.1);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut connection) = rumqttc::Client::new(options, 256);
        let messages: Vec<(String, String)> = (0..s.readings)
            .flat_map(|i| {
                mqtt_devices.iter().map(move |(device, readings)| {
                    (
                        format!("devices/{device}/telemetry"),
                        body(&readings[i]).to_string(),
                    )
                })
            })
            .collect();
        let total = messages.len();
        let (pace, per_round) = (s.pace, mqtt_devices.len());
        let publisher = std::thread::spawn(move || {
            for (n, (topic, payload)) in messages.into_iter().enumerate() {
                if client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .is_err()
                {
                    break;
                }
                if (n + 1) % per_round == 0 {
                    std::thread::sleep(pace);
                }
            }
            client
        });
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    published += 1;
                    if published == total {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("MQTT {}:{}: {e}", s.mqtt.0, s.mqtt.1)),
            }
        }
        let client = publisher.join().map_err(|_| "publisher panicked")?;
        let _ = client.disconnect();
    }
    let mut posted = 0;
    for gateway in gateways {
        posted += gateway.join().map_err(|_| "gateway panicked")??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "sent {} readings from {} devices in {elapsed:.1} s ({:.0}/s): {published} over MQTT, {posted} over HTTP",
        published + posted,
        s.devices,
        (published + posted) as f64 / elapsed.max(0.001),
    );
    if s.anomalies && s.devices > 2 {
        println!(
            "anomalies: sim-001 overheats (threshold), sim-002 jumps by 15 °C (sudden change)"
        );
    }
    Ok(())
}

/// `POST path` with a JSON body over plain HTTP/1.1; fails unless 2xx.
fn post((host, port): &(String, u16), path: &str, json: &str) -> Result<(), String> {
    let mut conn = TcpStream::connect((host.as_str(), *port))
        .map_err(|e| format!("HTTP {host}:{port}: {e}"))?;
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )
    .map_err(|e| format!("POST {path}: {e}"))?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = answer.split_whitespace().nth(1).unwrap_or_default();
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "POST {path}: {}",
            answer.lines().next().unwrap_or("no answer")
        ))
    }
}
