//! End-to-end: `gust up --otlp-endpoint` exports one span per invocation
//! with OTLP/HTTP (protobuf) to a collector, here a tiny receiver in the
//! test that decodes every request with the official OTLP definitions.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;

/// A span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<Value> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .clone()?
            .value
    }
    fn text(&self, key: &str) -> String {
        match self.attr(key) {
            Some(Value::StringValue(s)) => s,
            other => panic!("{key} is {other:?} in {self:#?}"),
        }
    }
    fn is_error(&self) -> bool {
        self.span.status.as_ref().map(|s| s.code) == Some(status::StatusCode::Error as i32)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver on 127.0.0.1: every request's path, content type
/// and decoded spans.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Collector {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (spans.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let (s, r) = (s.clone(), r.clone());
                std::thread::spawn(move || serve(conn, &s, &r));
            }
        });
        Self {
            url,
            spans,
            requests,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (bounded) until `want` spans of `trace` arrived; returns them.
    fn trace(&self, trace: &str, want: usize) -> Vec<Received> {
        let mut found = Vec::new();
        let arrived = eventually(Duration::from_secs(30), || {
            found = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id() == trace)
                .collect();
            found.len() >= want
        });
        assert!(
            arrived,
            "expected {want} spans of trace {trace}, got {found:#?}\nall: {:#?}",
            self.spans()
        );
        found
    }
}

/// Serves one keep-alive HTTP/1.1 connection: reads each request, decodes
/// its body, answers 200.
fn serve(conn: TcpStream, spans: &Mutex<Vec<Received>>, requests: &Mutex<Vec<(String, String)>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests.lock().unwrap().push((path, content_type));
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP request");
        for rs in request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.clone()?.value? {
                    Value::StringValue(s) => Some(s),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.lock().unwrap().push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if conn.write_all(answer).is_err() {
            return;
        }
    }
}

fn chain_app() -> TestApp {
    let app = TestApp::new(
        r#"
[app]
name = "traced"
[[function]]
name = "front"
source = "misbehave.wasm"
trigger = { http = { route = "/front/{action}", methods = ["POST"], auth = "anonymous" } }
bindings = { out = { queue = "jobs" } }
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs" } }
bindings = { seen = { kv = "seen" } }
retry = { strategy = "fixed", max_attempts = 1, min = "100ms", max = "100ms" }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app
}

/// HTTP -> queue -> function is one trace: the HTTP span continues the
/// caller's `traceparent`, the queue-triggered span is its child, each
/// invocation has exactly one span with the FaaS attributes, and failures
/// are status ERROR. An unsampled caller's trace is not exported.
#[test]
fn a_chain_of_invocations_is_one_exported_trace() {
    let collector = Collector::start();
    let app = chain_app();
    let host = up(app.path(), &["--quiet", "--otlp-endpoint", &collector.url]);
    let post = |path: &str, traceparent: Option<&str>, body: &[u8]| {
        let headers: Vec<(&str, &str)> = traceparent
            .map(|t| ("traceparent", t))
            .into_iter()
            .collect();
        send("POST", &format!("{}{path}", host.url), &headers, body)
    };

    // Sent first: the caller did not sample it, so nothing of it is exported.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let r = post(
        "/front/enqueue",
        Some(&format!("00-{unsampled}-b7ad6b7169203331-00")),
        b"unsampled",
    );
    assert_eq!(r.status, 200, "{r:?}");

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = post(
        "/front/enqueue",
        Some(&format!("00-{trace}-00f067aa0ba902b7-01")),
        b"chained",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let front_invocation = r.header("x-gust-invocation-id").unwrap().to_string();

    let spans = collector.trace(trace, 2);
    let front = spans
        .iter()
        .find(|s| s.span.name == "front http")
        .expect("front span");
    let worker = spans
        .iter()
        .find(|s| s.span.name == "worker queue")
        .expect("worker span");
    // The HTTP span continues the caller's span; the worker's is its child.
    assert_eq!(front.parent(), "00f067aa0ba902b7");
    assert_eq!(worker.parent(), front.span_id(), "{spans:#?}");
    assert_ne!(worker.span_id(), front.span_id());
    assert_eq!(front.span.kind, span::SpanKind::Server as i32);
    assert_eq!(worker.span.kind, span::SpanKind::Consumer as i32);
    assert_eq!(front.service, "traced");
    // FaaS attributes.
    assert_eq!(front.text("faas.invocation_id"), front_invocation);
    assert_eq!(front.text("faas.name"), "front");
    assert_eq!(front.text("faas.trigger"), "http");
    assert_eq!(front.text("http.request.method"), "POST");
    assert_eq!(front.text("http.route"), "/front/{action}");
    assert_eq!(
        front.attr("http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(worker.text("faas.trigger"), "pubsub");
    assert_eq!(worker.text("gust.trigger"), "queue");
    assert_ne!(worker.text("faas.invocation_id"), front_invocation);
    for s in [front, worker] {
        assert!(
            matches!(s.attr("faas.coldstart"), Some(Value::BoolValue(_))),
            "{s:#?}"
        );
        assert!(!s.is_error(), "{s:#?}");
        assert!(s.span.end_time_unix_nano >= s.span.start_time_unix_nano);
        assert!(s.span.start_time_unix_nano > 0);
    }

    // A new trace (no traceparent) whose queued function fails for good,
    // and an HTTP function that traps: status ERROR.
    let r = post("/front/enqueue", None, b"fatal");
    assert_eq!(r.status, 200, "{r:?}");
    let root_trace = r.header("x-gust-trace-id").unwrap().to_string();
    let spans = collector.trace(&root_trace, 2);
    let front = spans.iter().find(|s| s.span.name == "front http").unwrap();
    let worker = spans
        .iter()
        .find(|s| s.span.name == "worker queue")
        .unwrap();
    assert!(front.span.parent_span_id.is_empty(), "a root: {front:#?}");
    assert_eq!(worker.parent(), front.span_id());
    assert!(worker.is_error(), "{worker:#?}");
    assert!(
        worker
            .span
            .status
            .as_ref()
            .unwrap()
            .message
            .contains("asked to fail for good"),
        "{worker:#?}"
    );
    let r = post("/front/trap", None, b"");
    assert_eq!(r.status, 500, "{r:?}");
    let mut trapped = None;
    eventually(Duration::from_secs(30), || {
        trapped = collector.spans().into_iter().find(|s| {
            s.span.name == "front http"
                && s.attr("http.response.status_code") == Some(Value::IntValue(500))
        });
        trapped.is_some()
    });
    let trapped =
        trapped.unwrap_or_else(|| panic!("no span of the trap: {:#?}", collector.spans()));
    assert!(trapped.is_error(), "{trapped:#?}");
    assert!(trapped.span.parent_span_id.is_empty());

    // One span per invocation, and none of the unsampled trace (it was sent
    // first; give a straggler one more batch interval to show up).
    std::thread::sleep(Duration::from_secs(2));
    let all = collector.spans();
    let mut per_invocation: HashMap<String, usize> = HashMap::new();
    for s in &all {
        *per_invocation
            .entry(s.text("faas.invocation_id"))
            .or_default() += 1;
    }
    assert!(
        per_invocation.values().all(|n| *n == 1),
        "{per_invocation:?}"
    );
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(all.iter().all(|s| s.trace_id() != unsampled), "{all:#?}");
    let requests = collector.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|(path, ty)| path == "/v1/traces" && ty == "application/x-protobuf"),
        "{requests:?}"
    );
    // The metrics count them.
    let key = admin_key(app.path());
    let metrics = get(
        &format!("{}/_gust/metrics", host.url),
        &[("x-gust-key", &key)],
    );
    for line in [
        r#"gust_trace_spans_total{app="traced",outcome="exported"} 5"#,
        r#"gust_trace_spans_total{app="traced",outcome="dropped"} 0"#,
    ] {
        assert!(metrics.body.contains(line), "{line} in {}", metrics.body);
    }

    // A stop sends what is still queued: the span of a request answered
    // just before SIGTERM reaches the collector (without the flush it
    // would wait for a batch interval the process does not live through).
    let r = post("/front/enqueue", None, b"last");
    assert_eq!(r.status, 200, "{r:?}");
    let last = r.header("x-gust-invocation-id").unwrap().to_string();
    let mut host = host;
    assert_eq!(host.stop(), Some(0), "{}", host.stderr());
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s.text("faas.invocation_id") == last),
        "the last span was lost at the stop: {:#?}",
        collector.spans()
    );
}

/// A collector that is not there costs one warning, not failed or slow
/// invocations; the endpoint may come from OTEL_EXPORTER_OTLP_ENDPOINT.
#[test]
fn an_absent_collector_only_warns_now_and_then() {
    let app = chain_app();
    // A port nobody listens on.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let host = up_with_env(
        app.path(),
        &["--quiet"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &closed)],
    );
    for round in 0..4 {
        for _ in 0..5 {
            let r = send("POST", &format!("{}/front/ok", host.url), &[], b"");
            assert_eq!(r.status, 200, "{r:?}");
        }
        if round < 3 {
            // Past the exporter's batch interval: a new export each round.
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    let warned = eventually(Duration::from_secs(20), || {
        host.stderr().contains("trace export to")
    });
    assert!(warned, "no warning: {}", host.stderr());
    std::thread::sleep(Duration::from_millis(1500));
    let stderr = host.stderr();
    assert_eq!(stderr.matches("trace export to").count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{closed}/v1/traces")), "{stderr}");
    let key = admin_key(app.path());
    let metrics = get(
        &format!("{}/_gust/metrics", host.url),
        &[("x-gust-key", &key)],
    );
    assert!(
        metrics
            .body
            .contains(r#"gust_trace_spans_total{app="traced",outcome="exported"} 0"#),
        "{}",
        metrics.body
    );
    assert!(
        !metrics
            .body
            .contains(r#"gust_trace_spans_total{app="traced",outcome="failed"} 0"#),
        "{}",
        metrics.body
    );
    drop(host);
}

/// `gust serve --config node.toml` reads `otlp_endpoint`, `trace_sample`
/// and the replay limits from the file; `--trace-sample` on the command
/// line wins over the file's (0 there, 1 here: every trace exported).
#[test]
fn gust_serve_takes_trace_and_replay_settings_from_node_toml() {
    let collector = Collector::start();
    let app = chain_app();
    let config = app.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "app = \"{}\"\nlisten = \"127.0.0.1:0\"\nmqtt_listen = \"127.0.0.1:0\"\n\
             otlp_endpoint = \"{}\"\ntrace_sample = 0\n\
             replay_max_bytes = \"1MiB\"\nreplay_max_age = \"5m\"\n",
            app.path().display(),
            collector.url
        ),
    )
    .unwrap();
    let mut cmd = gust_command();
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--trace-sample", "1"]);
    let host = start_ready(cmd);

    let r = send(
        "POST",
        &format!("{}/front/enqueue", host.url),
        &[],
        b"served",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let trace = r.header("x-gust-trace-id").unwrap().to_string();
    let spans = collector.trace(&trace, 2);
    let worker = spans
        .iter()
        .find(|s| s.span.name == "worker queue")
        .unwrap_or_else(|| panic!("{spans:#?}"));

    // The worker's input was kept (1 MiB allowed): replay it through the
    // served node; the replay is a new invocation on a new trace.
    let id = worker.text("faas.invocation_id");
    let (code, out, err) = gust(&["replay", "worker", "--invocation", &id], app.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "handled served #2 attempt 1 source /gust/queue/jobs replay {id}"
        )),
        "{out}"
    );
    let replayed = eventually(Duration::from_secs(10), || {
        collector
            .spans()
            .iter()
            .any(|s| s.span.name == "worker queue" && s.trace_id() != trace)
    });
    assert!(
        replayed,
        "the replay's span, on a new trace: {:#?}",
        collector.spans()
    );
}
