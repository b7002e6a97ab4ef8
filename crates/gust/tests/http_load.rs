//! End-to-end: a real `gust up` under connection load (issue 16, "HTTP").
//! Requests with 100,000 headers or one 1 MiB header (HTTP/1.1, and a
//! CONTINUATION flood over HTTP/2) are refused with a 4xx or a closed
//! connection; thousands of idle connections do not stop other clients and
//! are closed by the header and idle timeouts; hundreds of event-stream
//! clients all receive a published event. Memory growth is checked against
//! generous bounds (never timed); `bench/conns.sh` runs the larger version
//! and measures latency.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Longest any one step waits for the host before the test fails.
const BOUND: Duration = Duration::from_secs(30);

/// An anonymous wasi:http function and an anonymous event stream of the
/// `job-events` topic, filtered on the job id.
fn app() -> TestApp {
    let app = TestApp::new(
        r#"
[app]
name = "load"

[[function]]
name = "raw"
source = "raw.wasm"
trigger = { http = { route = "/raw/{*rest}", auth = "anonymous" } }

[[sse]]
route = "/jobs/{id}/events"
topic = "job-events"
subject = "{id}"
auth = "anonymous"
"#,
    );
    app.add_component("raw.wasm", &guest("raw-wasip2"));
    app
}

/// `host:port` of a URL like `http://127.0.0.1:1234`.
fn authority(url: &str) -> &str {
    url.split_once("://").map(|(_, a)| a).unwrap_or(url)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// How many file descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// This process's soft limit on open files.
fn fd_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// The kernel's count of connections dropped because an accept queue was
/// full (all listeners of the machine; for the log only).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A plain request on a fresh connection: it must be served.
fn plain(running: &Running, what: &str) {
    let r = get(&format!("{}/raw/{what}", running.url), &[]);
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert_eq!(r.body, format!("raw wasip2: /raw/{what}"));
}

/// How the host answered a flood.
#[derive(Debug)]
enum Answer {
    /// An HTTP status (HTTP/1.1).
    Status(u16),
    /// HTTP/2: the frames received, as (type, first payload byte).
    Frames(Vec<(u8, u8)>),
    /// Closed (or reset) without a status.
    Closed,
}

/// Sends `request` from a thread while reading the answer: the host may
/// answer and close before it read everything. Waits at most [`BOUND`].
fn flood(addr: &str, request: Vec<u8>, http2: bool) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.set_write_timeout(Some(BOUND)).unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // Errors are expected: the host closes once it has refused.
        let _ = writer.write_all(&request);
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let timed_out = loop {
        match s.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if http2 && h2_frames(&got).iter().any(|(t, _)| [1, 3, 7].contains(t)) {
                    break false;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true;
            }
            Err(_) => break false,
        }
    };
    assert!(
        !timed_out,
        "the host neither answered nor closed within {BOUND:?}"
    );
    let _ = s.shutdown(std::net::Shutdown::Both);
    sender.join().unwrap();
    if http2 {
        return Answer::Frames(h2_frames(&got));
    }
    let text = String::from_utf8_lossy(&got);
    match text.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
        Some(status) if text.starts_with("HTTP/1.") => Answer::Status(status),
        _ => Answer::Closed,
    }
}

/// The HTTP/2 frames at the start of `bytes` whose head arrived: their
/// type and the first byte of their payload (0 if none arrived yet).
fn h2_frames(bytes: &[u8]) -> Vec<(u8, u8)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let first = if len > 0 {
            bytes.get(at + 9).copied()
        } else {
            None
        };
        frames.push((bytes[at + 3], first.unwrap_or(0)));
        at += 9 + len;
    }
    frames
}

/// An HTTP/1.1 request head with `count` extra small headers.
fn many_headers(count: usize) -> Vec<u8> {
    let mut r = b"GET /raw/flood HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..count {
        r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// An HTTP/1.1 request head with one header of `size` bytes.
fn one_big_header(size: usize) -> Vec<u8> {
    let mut r = b"GET /raw/flood HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    r.resize(r.len() + size, b'a');
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// An HTTP/2 (prior knowledge) connection whose first request carries
/// `count` literal headers: a HEADERS frame, then CONTINUATION frames of
/// 16 KiB.
fn h2_continuation_flood(count: usize) -> Vec<u8> {
    // :method GET, :scheme http, :path /, :authority "a" (HPACK, RFC 7541).
    let mut block = vec![0x82, 0x86, 0x84, 0x41, 0x01, b'a'];
    for _ in 0..count {
        // Literal without indexing, new name "x-a", value "1".
        block.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'a', 0x01, b'1']);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
    let chunks: Vec<&[u8]> = block.chunks(16384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 { 1 } else { 9 }; // HEADERS, CONTINUATION
        let mut flags = if i == 0 { 0x1 } else { 0 }; // END_STREAM
        if i == chunks.len() - 1 {
            flags |= 0x4; // END_HEADERS
        }
        let len = (chunk.len() as u32).to_be_bytes();
        out.extend_from_slice(&[len[1], len[2], len[3], kind, flags, 0, 0, 0, 1]);
        out.extend_from_slice(chunk);
    }
    out
}

/// A kind of flood: its name, the bytes it sends, whether it is HTTP/2.
type Flood = (&'static str, fn() -> Vec<u8>, bool);

#[test]
fn header_floods_are_refused_while_others_are_served() {
    let app = app();
    let mut running = up(app.path(), &["--no-watch"]);
    let addr = authority(&running.url).to_string();
    plain(&running, "warm");
    let rss_before = rss_kib(running.pid());

    // Two of each flood at once, while a client keeps being served.
    let kinds: [Flood; 3] = [
        ("100,000 headers", || many_headers(100_000), false),
        ("one 1 MiB header", || one_big_header(1 << 20), false),
        (
            "HTTP/2 CONTINUATION flood",
            || h2_continuation_flood(100_000),
            true,
        ),
    ];
    let floods: Vec<_> = kinds
        .iter()
        .chain(kinds.iter())
        .map(|&(what, request, http2)| {
            let addr = addr.clone();
            std::thread::spawn(move || (what, flood(&addr, request(), http2)))
        })
        .collect();
    let mut served = 0;
    while served < 5 || !floods.iter().all(|f| f.is_finished()) {
        plain(&running, &format!("during-{served}"));
        served += 1;
        assert!(served < 10_000, "the floods never ended");
    }
    for f in floods {
        let (what, answer) = f.join().unwrap();
        eprintln!("{what}: {answer:?}");
        match answer {
            Answer::Status(status) => {
                assert!((400..500).contains(&status), "{what}: answered {status}")
            }
            Answer::Closed => {}
            // GOAWAY, RST_STREAM, a 4xx, or closed: not a response HEADERS
            // frame starting with HPACK's indexed `:status` 200 or 500.
            Answer::Frames(frames) => assert!(
                !frames.contains(&(1, 0x88)) && !frames.contains(&(1, 0x8e)),
                "{what}: answered {frames:?}"
            ),
        }
    }
    plain(&running, "after");
    let rss_after = rss_kib(running.pid());
    eprintln!("RSS {rss_before} KiB before the floods, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 200 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(running.alive(), "{}", running.stderr());
}

#[test]
fn idle_connections_do_not_stop_others_and_are_closed_by_the_timeouts() {
    // Each connection costs one descriptor here and one in the host.
    let count = 2000.min(fd_limit().saturating_sub(256));
    assert!(
        count >= 500,
        "the open-files limit is too low for this test"
    );
    let app = app();
    let running = up(
        app.path(),
        &[
            "--no-watch",
            "--header-timeout",
            "8s",
            "--idle-timeout",
            "8s",
        ],
    );
    let addr = authority(&running.url).to_string();
    plain(&running, "warm");
    let pid = running.pid();
    let fds_before = open_fds(pid);
    let rss_before = rss_kib(pid);
    // A burst of connections waits in the accept queue rather than having
    // its SYNs dropped (a dropped client waits 1 to 3 s to retry): the
    // queue is deeper than the 128 of std and tokio.
    let port = addr.rsplit(':').next().unwrap();
    if let Some(backlog) = listen_backlog(port) {
        assert!(backlog >= 1024, "accept queue of {backlog}");
    }
    let overflows = listen_overflows();

    // Half never send anything; half send one request and then idle (its
    // answer is left unread).
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /_gust/health HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap();
        }
        idle.push(s);
    }
    // The host accepts and holds them (a descriptor each) and still serves
    // others.
    let held = eventually(BOUND, || open_fds(pid) >= fds_before + count * 9 / 10);
    let fds_during = open_fds(pid);
    eprintln!(
        "{count} idle connections: host fds {fds_before} -> {fds_during}; accept-queue overflows (whole machine) {}",
        listen_overflows() - overflows
    );
    assert!(
        held,
        "the host holds {fds_during} fds with {count} connections open"
    );
    for i in 0..5 {
        plain(&running, &format!("during-{i}"));
    }
    let rss_during = rss_kib(pid);

    // Every idle connection is closed by the host.
    let deadline = Instant::now() + BOUND;
    let mut buf = [0u8; 1024];
    for (i, s) in idle.iter_mut().enumerate() {
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false;
                }
                Err(_) => break true,
            }
        };
        assert!(closed, "idle connection #{i} of {count} still open");
    }
    drop(idle);
    plain(&running, "after");
    let fds_after = open_fds(pid);
    eprintln!(
        "host fds after: {fds_after}; RSS {rss_before} -> {rss_during} KiB with the idle connections"
    );
    assert!(
        fds_after < fds_before + 50,
        "the host kept {fds_after} fds (had {fds_before})"
    );
    assert!(
        rss_during < rss_before + 200 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );
}

/// An event stream read over a raw connection (HTTP/1.1, chunked).
struct Stream {
    s: TcpStream,
    got: Vec<u8>,
}

impl Stream {
    fn open(addr: &str, path: &str) -> Self {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        Self { s, got: Vec::new() }
    }

    /// Reads until `needle` arrived; false if the stream ended or
    /// `deadline` passed first.
    fn wait_for(&mut self, needle: &[u8], deadline: Instant) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            if self.got.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
            }
        }
    }
}

#[test]
fn hundreds_of_event_stream_clients_all_get_the_event() {
    let count = 500.min(fd_limit().saturating_sub(256));
    let app = app();
    let running = up(app.path(), &["--no-watch"]);
    let addr = authority(&running.url).to_string();
    plain(&running, "warm");
    let pid = running.pid();
    let rss_before = rss_kib(pid);

    let deadline = Instant::now() + BOUND;
    let mut streams: Vec<Stream> = (0..count)
        .map(|_| Stream::open(&addr, "/jobs/j1/events"))
        .collect();
    for (i, s) in streams.iter_mut().enumerate() {
        assert!(
            s.wait_for(b": connected", deadline),
            "stream #{i} never opened: {}",
            String::from_utf8_lossy(&s.got)
        );
    }
    plain(&running, "with-streams");

    let host_key = keys(app.path())["host"].as_str().unwrap().to_string();
    let event = r#"{"specversion":"1.0","id":"load-1","source":"/load","type":"job.progress","subject":"j1","datacontenttype":"text/plain","data":"half way"}"#;
    let r = send(
        "POST",
        &format!("{}/_gust/topics/job-events", running.url),
        &[
            ("x-gust-key", host_key.as_str()),
            ("content-type", "application/cloudevents+json"),
        ],
        event.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let deadline = Instant::now() + BOUND;
    for (i, s) in streams.iter_mut().enumerate() {
        assert!(
            s.wait_for(
                b"id: load-1\nevent: job.progress\ndata: half way\n",
                deadline
            ),
            "stream #{i} of {count} missed the event: {}",
            String::from_utf8_lossy(&s.got)
        );
    }
    plain(&running, "after-event");
    let rss_after = rss_kib(pid);
    eprintln!("{count} event streams: RSS {rss_before} -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 200 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    drop(streams);
    plain(&running, "after-streams");
}
