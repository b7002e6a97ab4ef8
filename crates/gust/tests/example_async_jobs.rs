//! End-to-end: `examples/async-jobs` under a real `gust up`, driven like a
//! client would: upload a generated PNG, follow the job's server-sent-event
//! stream, receive the completion callback on a small HTTP server of the
//! test (which refuses the first delivery, so the queue retries only the
//! callback), then read the status and the thumbnail. Bad uploads get clear
//! errors; a callback to a destination outside `outbound_http` is refused
//! by the host (`HttpRequestDenied`) and logged.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The example's manifest with sources pointing back at the example.
fn app() -> TestApp {
    let example = repo().join("examples/async-jobs");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    TestApp::new(&manifest.replace("source = \"functions/", &functions))
}

// ── A PNG encoder small enough to live here (stored deflate blocks).

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// An RGB PNG of `width`×`height` with `pixel(x, y)`.
fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Width and height from a PNG's IHDR.
fn png_size(data: &[u8]) -> (u32, u32) {
    assert!(data.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&data[12..16], b"IHDR");
    let n = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap());
    (n(16), n(20))
}

// ── The callback receiver: answers 503 to the first delivery, then 200.

struct Delivery {
    path: String,
    job_header: Option<String>,
    body: Value,
    answered: u16,
}

/// A request as the receiver saw it: path, lower-cased headers, body.
type Received = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((path, headers, body))
}

fn callback_server() -> (String, mpsc::Receiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/done", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let Some((path, headers, body)) = read_request(&mut stream) else {
                continue;
            };
            let answered = if n == 0 { 503 } else { 200 };
            let reply = format!(
                "HTTP/1.1 {answered} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
            let _ = stream.write_all(reply.as_bytes());
            let job_header = headers
                .iter()
                .find(|(k, _)| k == "x-gust-job-id")
                .map(|(_, v)| v.clone());
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if tx
                .send(Delivery {
                    path,
                    job_header,
                    body,
                    answered,
                })
                .is_err()
            {
                break;
            }
        }
    });
    (url, rx)
}

// ── Server-sent events, read like a browser's EventSource would.

#[derive(Debug, Clone)]
struct SseFrame {
    id: String,
    event: String,
    data: String,
}

/// Reads frames from `url` until one of type `until` (or `timeout`).
fn read_events(url: &str, until: &str, timeout: Duration) -> Vec<SseFrame> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = agent.get(url).call().expect("open the event stream");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(content_type, "text/event-stream");
    let reader = BufReader::new(response.body_mut().as_reader());
    let mut frames = Vec::new();
    let mut current = SseFrame {
        id: String::new(),
        event: String::new(),
        data: String::new(),
    };
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            if !current.event.is_empty() {
                let done = current.event == until;
                frames.push(current.clone());
                if done {
                    break;
                }
            }
            current = SseFrame {
                id: String::new(),
                event: String::new(),
                data: String::new(),
            };
        } else if let Some(v) = line.strip_prefix("id: ") {
            current.id = v.into();
        } else if let Some(v) = line.strip_prefix("event: ") {
            current.event = v.into();
        } else if let Some(v) = line.strip_prefix("data: ") {
            if !current.data.is_empty() {
                current.data.push('\n');
            }
            current.data.push_str(v);
        }
    }
    frames
}

fn job(url: &str) -> Value {
    let r = get(url, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn wait_for_job(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let j = job(url);
        if done(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {j:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn async_jobs_submit_progress_callback_and_result() {
    let app = app();
    let (callback, deliveries) = callback_server();
    let mut running = up(app.path(), &[]);
    let url = running.url.clone();

    // The page is there and uses relative URLs.
    let page = get(&format!("{url}/"), &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("fetch(\"jobs\""), "{}", page.body);

    // ── Submit a 640×480 gradient with a callback.
    let image = png(640, 480, |x, y| {
        [(x * 255 / 639) as u8, (y * 255 / 479) as u8, 90]
    });
    let started = Instant::now();
    let r = send(
        "POST",
        &format!("{url}/jobs?callback={}", gust_sdk_url_encode(&callback)),
        &[("content-type", "image/png")],
        &image,
    );
    assert_eq!(r.status, 202, "{r:?}");
    let submitted = r.json();
    let id = submitted["id"].as_str().unwrap().to_string();
    let status_url = submitted["status_url"].as_str().unwrap().to_string();
    assert_eq!(status_url, format!("{url}/jobs/{id}"));
    assert_eq!(r.header("location"), Some(status_url.as_str()));
    assert_eq!(
        submitted["events_url"].as_str().unwrap(),
        format!("{url}/jobs/{id}/events")
    );

    // ── The event stream: replayed and live frames up to completion.
    let frames = read_events(
        submitted["events_url"].as_str().unwrap(),
        "job.completed",
        Duration::from_secs(90),
    );
    let kinds: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"job.queued"), "{frames:#?}");
    assert_eq!(kinds.last(), Some(&"job.completed"), "{frames:#?}");
    let stages: Vec<String> = frames
        .iter()
        .map(|f| {
            let data: Value = serde_json::from_str(&f.data).unwrap();
            assert_eq!(data["id"], id.as_str());
            assert!(!f.id.is_empty());
            format!("{}:{}", data["stage"].as_str().unwrap(), data["progress"])
        })
        .collect();
    assert_eq!(
        stages,
        [
            "queued:0",
            "decoding:10",
            "analysing:40",
            "thumbnail:70",
            "storing:90",
            "completed:100"
        ],
        "{frames:#?}"
    );
    let completed: Value = serde_json::from_str(&frames.last().unwrap().data).unwrap();
    assert_eq!(completed["result"]["width"], 640);
    println!("completed after {:?}", started.elapsed());

    // ── The callback: refused once by the receiver, then delivered.
    let first = deliveries
        .recv_timeout(Duration::from_secs(60))
        .expect("first callback delivery");
    assert_eq!(first.answered, 503);
    let second = deliveries
        .recv_timeout(Duration::from_secs(60))
        .expect("callback retried after a 503");
    assert_eq!(second.answered, 200);
    println!("callback delivered after {:?}", started.elapsed());
    for d in [&first, &second] {
        assert_eq!(d.path, "/hooks/done");
        assert_eq!(d.job_header.as_deref(), Some(id.as_str()));
        assert_eq!(d.body["id"], id.as_str());
        assert_eq!(d.body["status"], "completed");
        assert_eq!(d.body["status_url"], status_url.as_str());
        assert_eq!(d.body["result"]["height"], 480);
    }

    // ── Status and result.
    let j = wait_for_job(&status_url, "callback delivered", |j| {
        j["callback"]["state"] == "delivered"
    });
    assert_eq!(j["status"], "completed");
    assert_eq!(j["progress"], 100);
    assert_eq!(j["content_type"], "image/png");
    assert_eq!(j["size"], image.len());
    assert_eq!(j["callback"]["attempts"], 2);
    assert_eq!(j["callback"]["last_status"], 200);
    let result = &j["result"];
    assert_eq!(result["format"], "png");
    assert_eq!(
        (result["width"].as_u64(), result["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(result["color_type"], "Rgb8");
    assert_eq!(result["has_transparency"], false);
    // Red runs 0..255 across, green 0..255 down: both average ~127.5.
    let mean = result["mean_rgb"].as_array().unwrap();
    assert!((mean[0].as_f64().unwrap() - 127.5).abs() < 1.0, "{mean:?}");
    assert!((mean[1].as_f64().unwrap() - 127.5).abs() < 1.0, "{mean:?}");
    assert!((mean[2].as_f64().unwrap() - 90.0).abs() < 0.01, "{mean:?}");
    let histogram: f64 = result["luma_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((histogram - 1.0).abs() < 0.01, "{result}");
    assert_eq!(
        (
            result["thumbnail_width"].as_u64(),
            result["thumbnail_height"].as_u64()
        ),
        (Some(160), Some(120))
    );

    // ── The thumbnail.
    let t = agent_bytes(&format!("{status_url}/thumbnail"));
    assert_eq!(t.0, 200);
    assert_eq!(t.1, "image/png");
    assert_eq!(png_size(&t.2), (160, 120));
    assert_eq!(
        t.2.len() as u64,
        result["thumbnail_bytes"].as_u64().unwrap()
    );

    // The image work ran once although the callback was delivered twice.
    let worker_logs = function_logs(app.path(), "process-job");
    assert_eq!(
        worker_logs.matches(&format!("job {id} completed")).count(),
        1,
        "{worker_logs}"
    );

    // A late subscriber still gets the job's history (replay).
    let late = read_events(
        submitted["events_url"].as_str().unwrap(),
        "job.completed",
        Duration::from_secs(10),
    );
    assert_eq!(late.len(), 6, "{late:#?}");

    // ── Events published through the ingress reach the stream too.
    let subject_stream = {
        let events_url = submitted["events_url"].as_str().unwrap().to_string();
        std::thread::spawn(move || read_events(&events_url, "job.note", Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, err) = gust(
        &[
            "events",
            "publish",
            "job-events",
            "--type",
            "job.note",
            "--subject",
            &id,
            "--data",
            "{\"note\":\"hello\"}",
            "--app",
            app.path().to_str().unwrap(),
        ],
        app.path(),
    );
    assert_eq!(code, 0, "{err}");
    let noted = subject_stream.join().unwrap();
    let note = noted.last().unwrap();
    assert_eq!(note.event, "job.note");
    assert_eq!(note.data, "{\"note\":\"hello\"}");

    // ── Bad input.
    let r = send(
        "POST",
        &format!("{url}/jobs"),
        &[],
        b"plain text, not an image",
    );
    assert_eq!(r.status, 415, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("PNG and JPEG")
    );
    let r = send("POST", &format!("{url}/jobs"), &[], b"");
    assert_eq!(r.status, 400, "{r:?}");
    let r = send(
        "POST",
        &format!("{url}/jobs?callback=ftp://example.org/x"),
        &[],
        &image,
    );
    assert_eq!(r.status, 400, "{r:?}");
    let big = vec![0x89u8; 9 << 20];
    let r = send("POST", &format!("{url}/jobs"), &[], &big);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(
        get(&format!("{url}/jobs/0123456789abcdef"), &[]).status,
        404
    );
    let r = send("POST", &format!("{url}/jobs/{id}/events"), &[], b"");
    assert_eq!(r.status, 405, "{r:?}");

    // A PNG signature with garbage behind it: accepted, then failed with the reason.
    let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
    broken.extend_from_slice(&[7u8; 300]);
    let r = send("POST", &format!("{url}/jobs"), &[], &broken);
    assert_eq!(r.status, 202, "{r:?}");
    let broken_url = r.json()["status_url"].as_str().unwrap().to_string();
    let j = wait_for_job(&broken_url, "broken image failed", |j| {
        j["status"] == "failed"
    });
    assert!(j["error"].as_str().unwrap().contains("cannot"), "{j:#}");
    assert_eq!(get(&format!("{broken_url}/thumbnail"), &[]).status, 410);

    // ── A callback outside `outbound_http` is refused by the host.
    let denied = "http://127.0.0.2:1/hooks/done";
    let r = send(
        "POST",
        &format!("{url}/jobs?callback={}", gust_sdk_url_encode(denied)),
        &[],
        &png(32, 32, |_, _| [1, 2, 3]),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let denied_url = r.json()["status_url"].as_str().unwrap().to_string();
    let j = wait_for_job(&denied_url, "callback denied", |j| {
        j["callback"]["state"] == "denied"
    });
    assert_eq!(j["status"], "completed");
    assert_eq!(j["callback"]["attempts"], 1);
    assert!(
        j["callback"]["last_error"]
            .as_str()
            .unwrap()
            .contains("not allowed by `outbound_http`"),
        "{j:#}"
    );
    let notify_logs = function_logs(app.path(), "notify");
    assert!(
        notify_logs.contains("outbound HTTP denied: POST http://127.0.0.2:1/hooks/done"),
        "{notify_logs}"
    );
    assert!(deliveries.try_recv().is_err(), "no further deliveries");

    // The host kept serving through all of it, and stops cleanly with a
    // stream open (shutdown ends event streams).
    assert_eq!(job(&status_url)["status"], "completed");
    let open_stream = {
        let events_url = submitted["events_url"].as_str().unwrap().to_string();
        std::thread::spawn(move || read_events(&events_url, "never", Duration::from_secs(60)))
    };
    std::thread::sleep(Duration::from_millis(500));
    let stopping = Instant::now();
    assert_eq!(running.stop(), Some(0), "{}", running.stderr());
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(open_stream.join().unwrap().len(), 7);
}

/// Percent-encodes a query value.
fn gust_sdk_url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET url` as bytes: (status, content type, body).
fn agent_bytes(url: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.body_mut().read_to_vec().unwrap();
    (r.status().as_u16(), ct, body)
}
