//! End-to-end: Prometheus metrics of the real `gust up`: exact counts per
//! function and trigger on `GET /_gust/metrics` (admin key) and on the
//! key-less `--metrics-listen` listener, the text checked by `promtool`
//! and scraped by a real Prometheus server; a folder of apps labels each
//! app's series with its own `app`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Every sample of an exposition text: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            };
            (key.to_string(), value)
        })
        .collect()
}

/// The value of sample `key`, failing with the whole text if it is missing.
fn value(text: &str, key: &str) -> f64 {
    *samples(text)
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
}

/// `name{app="..",function="..",trigger=".."}`.
fn series(name: &str, app: &str, function: &str, trigger: &str) -> String {
    format!("{name}{{app=\"{app}\",function=\"{function}\",trigger=\"{trigger}\"}}")
}

/// Checks `text` with `promtool check metrics` (installed by
/// `scripts/setup.sh --services`).
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/setup.sh --services installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server on a free port of 127.0.0.1 with its own config and
/// data folder, scraping `target` (`host:port`, path `/metrics`) every
/// second. Killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: gust\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus (Debian package `prometheus`; scripts/setup.sh --services installs it)",
            );
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// `function -> value` of an instant query whose result is labelled by
    /// `function`; empty until the server is up and has scraped.
    fn by_function(&self, query: &str) -> BTreeMap<String, f64> {
        let url = format!("{}/api/v1/query?query={}", self.url, encode(query));
        // Not listening yet, or not ready: nothing yet.
        let Ok(mut r) = ureq::get(&url).call() else {
            return BTreeMap::new();
        };
        let Ok(json) = r.body_mut().read_json::<serde_json::Value>() else {
            return BTreeMap::new();
        };
        json["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| {
                let function = row["metric"]["function"].as_str()?.to_string();
                let value = row["value"][1].as_str()?.parse().ok()?;
                Some((function, value))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The dead-letter depth of queue `jobs`.
const DEAD_JOBS: &str = "gust_queue_deadletter_depth{app=\"metered\",queue=\"jobs\"}";

/// The lag of `reader` summed over the 2 partitions of stream `ticks`, once
/// both are reported.
fn lag(samples: &BTreeMap<String, f64>) -> Option<f64> {
    (0..2)
        .map(|p| {
            samples
                .get(&format!(
                    "gust_stream_lag_records{{app=\"metered\",function=\"reader\",stream=\"ticks\",partition=\"{p}\"}}"
                ))
                .copied()
        })
        .sum()
}

fn metrics_app() -> TestApp {
    let app = TestApp::new(
        r#"
[app]
name = "metered"

[[function]]
name = "web"
source = "misbehave.wasm"
trigger = { http = { route = "/web/{action}", auth = "anonymous" } }
limits = { timeout = "1s" }

[[function]]
name = "other"
source = "misbehave.wasm"
trigger = { http = { route = "/other/{action}", auth = "anonymous" } }

[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs", batch_size = 8, concurrency = 2, visibility = "5s" } }
bindings = { seen = { kv = "seen" } }
retry = { strategy = "fixed", max_attempts = 2, min = "100ms", max = "100ms" }

[[function]]
name = "reader"
source = "probe.wasm"
trigger = { stream = { stream = "ticks", start = "earliest", partitions = 2 } }
bindings = { seen = { kv = "seen" } }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app
}

/// The metrics listener on `port` has the accept queue of every gust
/// listener, 4096 (or the kernel's `somaxconn` if lower), not std's 128 or
/// tokio's 1024, when `ss` can tell.
fn assert_deep_accept_queue(port: u16) {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(4096);
    if let Some(backlog) = listen_backlog(&port.to_string()) {
        let expected = somaxconn.min(4096);
        assert!(
            backlog >= expected,
            "metrics listener accept queue of {backlog}, expected {expected}"
        );
    }
}

#[test]
fn metrics_count_every_invocation_by_function_and_trigger() {
    let app = metrics_app();
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut host = up(app.path(), &["--metrics-listen", &metrics_addr]);
    let url = host.url.clone();
    assert_deep_accept_queue(port);
    let key = admin_key(app.path());

    // HTTP: `web` 6 fine, 1 trap, 1 timeout; `other` 3 fine.
    for _ in 0..6 {
        assert_eq!(get(&format!("{url}/web/ok"), &[]).status, 200);
    }
    assert_eq!(get(&format!("{url}/web/trap"), &[]).status, 500);
    assert_eq!(get(&format!("{url}/web/loop"), &[]).status, 504);
    for _ in 0..3 {
        assert_eq!(get(&format!("{url}/other/ok"), &[]).status, 200);
    }
    // Queue: 5 handled, 1 refused for good (dead-lettered at once).
    for body in ["a", "b", "c", "d", "e", "fatal"] {
        let r = send(
            "POST",
            &format!("{url}/_gust/queues/jobs/messages"),
            &[("x-gust-key", &key), ("content-type", "text/plain")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 202, "{r:?}");
    }

    // Stream: 4 records over 2 partitions.
    for (i, record_key) in ["k1", "k2", "k3", "k4"].iter().enumerate() {
        let r = send(
            "POST",
            &format!("{url}/_gust/streams/ticks/records?key={record_key}"),
            &[("x-gust-key", &key), ("content-type", "text/plain")],
            format!("tick{i}").as_bytes(),
        );
        assert_eq!(r.status, 201, "{r:?}");
    }

    // The admin route needs the key; the metrics listener does not.
    assert_eq!(get(&format!("{url}/_gust/metrics"), &[]).status, 401);
    let admin = || get(&format!("{url}/_gust/metrics"), &[("x-gust-key", &key)]);
    let worker = series("faas_invocations_total", "metered", "worker", "queue");
    let reader = series("faas_invocations_total", "metered", "reader", "stream");
    let settled = eventually(Duration::from_secs(30), || {
        let s = samples(&admin().body);
        s.get(&worker) == Some(&6.0)
            && s.get(&reader) == Some(&4.0)
            && s.get(DEAD_JOBS) == Some(&1.0)
            && lag(&s) == Some(0.0)
    });
    let r = admin();
    assert!(
        settled,
        "queue never settled:\n{}\n{}",
        r.body,
        host.stderr()
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let listener = get(&format!("http://{metrics_addr}/metrics"), &[]);
    assert_eq!(listener.status, 200, "{listener:?}");
    assert_eq!(listener.header("content-type"), r.header("content-type"));
    assert_eq!(
        get(&format!("http://{metrics_addr}/other"), &[]).status,
        404
    );

    for text in [&r.body, &listener.body] {
        // (function, trigger, invocations, errors, timeouts)
        for (function, trigger, calls, errors, timeouts) in [
            ("web", "http", 8.0, 2.0, 1.0),
            ("other", "http", 3.0, 0.0, 0.0),
            ("worker", "queue", 6.0, 1.0, 0.0),
            ("reader", "stream", 4.0, 0.0, 0.0),
        ] {
            let s = |name: &str| value(text, &series(name, "metered", function, trigger));
            assert_eq!(s("faas_invocations_total"), calls, "{function}");
            assert_eq!(s("faas_errors_total"), errors, "{function}");
            assert_eq!(s("faas_timeouts_total"), timeouts, "{function}");
            // A fresh instance per invocation: every one is a cold start.
            assert_eq!(s("faas_coldstarts_total"), calls, "{function}");
            assert_eq!(s("faas_inflight"), 0.0, "{function}");
            assert_eq!(s("faas_invoke_duration_seconds_count"), calls, "{function}");
            assert_eq!(s("faas_init_duration_seconds_count"), calls, "{function}");
            let inf = format!(
                "faas_invoke_duration_seconds_bucket{{app=\"metered\",function=\"{function}\",trigger=\"{trigger}\",le=\"+Inf\"}}"
            );
            assert_eq!(value(text, &inf), calls, "{function}");
        }
        // The timed-out invocation ran for its whole 1 s timeout.
        let web_sum = series("faas_invoke_duration_seconds_sum", "metered", "web", "http");
        assert!(value(text, &web_sum) >= 1.0, "{text}");
        assert_eq!(
            value(text, "gust_queue_depth{app=\"metered\",queue=\"jobs\"}"),
            0.0
        );
        assert_eq!(value(text, DEAD_JOBS), 1.0);
        assert_eq!(lag(&samples(text)), Some(0.0), "{text}");
        assert!(value(text, "process_resident_memory_bytes") > (1 << 20) as f64);
        // What the bounded holders retain: the queue and stream events are
        // kept for `gust replay`; every holder has its series.
        let held = |what: &str, holder: &str| {
            value(
                text,
                &format!("gust_retained_{what}{{app=\"metered\",holder=\"{holder}\"}}"),
            )
        };
        assert_eq!(held("items", "replay"), 10.0, "{text}");
        assert!(held("bytes", "replay") > 10.0 * 200.0, "{text}");
        for holder in ["logs", "sse", "dedupe"] {
            assert!(held("bytes", holder) >= 0.0);
        }
        // The queue and stream files are open, their caches in use and
        // under their bound.
        let files = held("items", "page_cache");
        assert!(files >= 2.0, "{text}");
        let cached = held("bytes", "page_cache");
        assert!(cached > 0.0, "{text}");
        assert!(cached <= files * (4 << 20) as f64, "{text}");
        let queues = value(
            text,
            "gust_storage_file_bytes{app=\"metered\",file=\"queues.redb\"}",
        );
        assert!(queues > 0.0, "{text}");
        assert!(value(text, "process_heap_bytes{state=\"in_use\"}") > (1 << 20) as f64);
        promtool_check(text);
    }

    // A real Prometheus server scraping the metrics listener sees the same.
    let prometheus = Prometheus::start(&metrics_addr);
    let query = "sum by (function)(faas_invocations_total{app=\"metered\"})";
    let want = BTreeMap::from([
        ("other".to_string(), 3.0),
        ("web".to_string(), 8.0),
        ("reader".to_string(), 4.0),
        ("worker".to_string(), 6.0),
    ]);
    let mut seen = BTreeMap::new();
    let scraped = eventually(Duration::from_secs(30), || {
        seen = prometheus.by_function(query);
        seen == want
    });
    assert!(scraped, "Prometheus answered {seen:?}, expected {want:?}");
    assert_eq!(host.stop(), Some(0), "{}", host.stderr());
}

/// One HTTP function over the `misbehave` guest at `/hi/{action}`.
fn write_app(dir: &Path, name: &str, function: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("gust.toml"),
        format!(
            r#"
[app]
name = "{name}"
[[function]]
name = "{function}"
source = "misbehave.wasm"
trigger = {{ http = {{ route = "/hi/{{action}}", auth = "anonymous" }} }}
"#
        ),
    )
    .unwrap();
    std::fs::copy(guest("misbehave"), dir.join("misbehave.wasm")).unwrap();
}

#[test]
fn a_folder_of_apps_labels_each_app_on_one_metrics_listener() {
    let root = tempfile::tempdir().unwrap();
    write_app(&root.path().join("alpha"), "alpha", "hello");
    write_app(&root.path().join("beta"), "beta", "hello");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut host = up(root.path(), &["--metrics-listen", &metrics_addr]);
    let front = host.url.clone();
    assert_deep_accept_queue(metrics_addr.rsplit(':').next().unwrap().parse().unwrap());
    for _ in 0..2 {
        assert_eq!(get(&format!("{front}/alpha/hi/ok"), &[]).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(&format!("{front}/beta/hi/ok"), &[]).status, 200);
    }

    let text = get(&format!("http://{metrics_addr}/metrics"), &[]).body;
    let calls = |app: &str| {
        value(
            &text,
            &series("faas_invocations_total", app, "hello", "http"),
        )
    };
    assert_eq!(calls("alpha"), 2.0, "{text}");
    assert_eq!(calls("beta"), 3.0, "{text}");
    // One family, both apps' samples in it; one process.
    assert_eq!(text.matches("# TYPE faas_invocations_total ").count(), 1);
    assert_eq!(text.matches("\nprocess_resident_memory_bytes ").count(), 1);
    promtool_check(&text);

    // Each app's own admin route (through the front) shows only its app.
    let key = admin_key(&root.path().join("alpha"));
    let r = get(
        &format!("{front}/alpha/_gust/metrics"),
        &[("x-gust-key", &key)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        value(
            &r.body,
            &series("faas_invocations_total", "alpha", "hello", "http")
        ),
        2.0
    );
    assert!(!r.body.contains("app=\"beta\""), "{}", r.body);
    assert_eq!(host.stop(), Some(0), "{}", host.stderr());
}
