//! End-to-end: the web console at `/_gust/console/`, used in a headless
//! Chromium the way an operator does. It signs in with the admin key (a
//! wrong key first), sees the app's functions, watches a function's chart
//! move while load runs, sees a queue message become a dead letter, peeks
//! at it, redrives it from the page once the function can succeed, and
//! reads the invocation's log lines, then replays the recorded failure and
//! sees the recorded outcome beside the new run's. Screenshots go to
//! `target/artifacts/console-*.png`.
//!
//! The queue function (`tests/guests/event-probe`) fails for good on data
//! containing `gated` while the kv store `gate` has no key `hits`; the HTTP
//! function (`tests/guests/misbehave`) sends to the queue (`/m/enqueue`)
//! and opens the gate (`/m/kv`).

mod browser;
mod common;

use std::time::Duration;

use browser::Browser;
use common::*;
use serde_json::{Value, json};

const MANIFEST: &str = r#"
[app]
name = "console-demo"
[[function]]
name = "hit"
source = "misbehave.wasm"
trigger = { http = { route = "/m/{*rest}", auth = "anonymous" } }
bindings = { store = { kv = "gate" }, out = { queue = "jobs" } }
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
retry = { strategy = "fixed", max_attempts = 2, min = "10ms", max = "10ms" }
[[function]]
name = "telemetry"
source = "probe.wasm"
trigger = { stream = { stream = "readings", start = "earliest" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
[[function]]
name = "hourly"
source = "probe.wasm"
trigger = { timer = { schedule = "0 0 * * * *" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
[gateway]
[[gateway.route]]
name = "v1"
prefix = "/v1"
target = { function = "hit", rewrite = "/m/{rest}" }
"#;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `script` in the page until it returns something truthy (up to
/// [`WAIT`]); returns that value or panics with `what`.
fn wait_for(b: &Browser, what: &str, script: &str) -> Value {
    let mut last = Value::Null;
    let ok = browser::wait(WAIT, || {
        last = b.execute(script, vec![]);
        !(last.is_null() || last == json!(false) || last == json!(""))
    });
    assert!(ok, "{what}: never happened on {}", b.url());
    last
}

/// The `d` of function `f`'s invocation-rate line (`null` before it has
/// two polls).
fn rate_line(b: &Browser, f: &str) -> Value {
    b.execute(
        &format!(
            "const p = document.querySelector('article[data-function=\"{f}\"] svg[data-chart=rate] path.line'); return p && p.getAttribute('d');"
        ),
        vec![],
    )
}

#[test]
fn operator_watches_load_and_redrives_a_dead_letter_in_a_real_browser() {
    let app = TestApp::new(MANIFEST);
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    let dir = app.path();
    let host = up(dir, &["--quiet", "--no-watch"]);
    let url = host.url.clone();
    let key = admin_key(dir);

    // ── Over HTTP: the page needs no key, its data does.
    let page = get(&format!("{url}/_gust/console/"), &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("console.js"));
    let tag = page.header("etag").expect("etag").to_string();
    let again = get(&format!("{url}/_gust/console/"), &[("if-none-match", &tag)]);
    assert_eq!(again.status, 304);
    let js = get(&format!("{url}/_gust/console/console.js"), &[]);
    assert_eq!(
        (js.status, js.header("content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
    // `/_gust/console` redirects to the folder (the client follows it).
    let moved = get(&format!("{url}/_gust/console"), &[]);
    assert_eq!(moved.status, 200);
    assert!(moved.body.contains("console.js"));
    assert_eq!(get(&format!("{url}/_gust/stats"), &[]).status, 401);
    let stats = get(&format!("{url}/_gust/stats"), &[("x-gust-key", &key)]).json();
    let names: Vec<&str> = stats["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hit", "worker", "telemetry", "hourly"], "{stats}");
    assert_eq!(stats["queues"][0]["name"], "jobs", "{stats}");
    assert_eq!(stats["timers"][0]["function"], "hourly", "{stats}");
    assert_eq!(
        stats["streams"][0]["partitions"].as_array().map(Vec::len),
        Some(4),
        "{stats}"
    );

    // A few stream records, so the stream row has something to show.
    for (i, device) in ["d1", "d2", "d3"].iter().enumerate() {
        let r = send(
            "POST",
            &format!("{url}/_gust/streams/readings/records?key={device}"),
            &[("x-gust-key", &key)],
            format!("reading-{i}").as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }

    // ── Sign in: a wrong key is refused, the right one opens the console.
    let b = Browser::start();
    b.goto(&format!("{url}/_gust/console/"));
    let input = b.find("#key");
    b.type_text(&input, "not-the-key");
    b.click(&b.find("#login-button"));
    b.wait_text("#login-error", WAIT, |t| t.contains("refused"));
    b.screenshot(&browser::artifact("console-login"));
    let input = b.find("#key");
    b.clear(&input);
    b.type_text(&input, &key);
    b.click(&b.find("#login-button"));
    wait_for(
        &b,
        "the function list",
        "return document.querySelectorAll('article[data-function]').length === 4",
    );
    b.wait_text("#app-name", WAIT, |t| t == "console-demo");
    let hit = b.text_of("article[data-function=\"hit\"]");
    assert!(hit.contains("/m/{*rest}"), "{hit}");
    assert!(hit.contains("out → queue jobs"), "{hit}");
    b.wait_text("#timer-table", WAIT, |t| {
        t.contains("hourly") && t.contains("in ")
    });
    b.wait_text("#stream-table", WAIT, |t| t.contains("readings"));
    let r = get(&format!("{url}/v1/ok"), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    b.wait_text("#route-table", WAIT, |t| t.contains("v1"));

    // ── Load moves the chart of `hit`.
    wait_for(
        &b,
        "two polls",
        "return Number(document.body.dataset.polls) >= 2",
    );
    let before = rate_line(&b, "hit");
    let load_url = url.clone();
    let load = std::thread::spawn(move || {
        for _ in 0..30 {
            for _ in 0..10 {
                let r = get(&format!("{load_url}/m/ok"), &[]);
                assert_eq!(r.status, 200);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    wait_for(
        &b,
        "the rate chart of `hit` rising",
        "const s = document.querySelector('article[data-function=\"hit\"] svg[data-chart=rate]'); return s && Number(s.dataset.max) > 0",
    );
    load.join().unwrap();
    b.wait_text("article[data-function=\"hit\"] .n-total", WAIT, |t| {
        t == "301"
    });
    let after = rate_line(&b, "hit");
    assert_ne!(before, after, "the rate line did not change");
    assert!(after.as_str().is_some_and(|d| d.contains('L')), "{after}");
    wait_for(
        &b,
        "a p99 latency for `hit`",
        "const t = document.querySelector('article[data-function=\"hit\"] .n-p99'); return t && t.textContent.endsWith('ms')",
    );
    // Two more polls, so the picture shows the load rise and fall.
    let polls = b.execute("return Number(document.body.dataset.polls)", vec![]);
    wait_for(
        &b,
        "two more polls",
        &format!(
            "return Number(document.body.dataset.polls) >= {} + 2",
            polls
        ),
    );
    b.screenshot(&browser::artifact("console-functions"));

    // ── A message that fails becomes a dead letter; peek shows it.
    let r = send("POST", &format!("{url}/m/enqueue"), &[], b"gated-job");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(
        &b,
        "one dead letter in `jobs`",
        "const r = document.querySelector('tr[data-queue=jobs]'); return r && r.dataset.deadletters === '1'",
    );
    b.click(&b.find("tr[data-queue=jobs] button.peek"));
    let peeked = b.wait_text("#queue-detail .dead-letters", WAIT, |t| {
        t.contains("gated-job")
    });
    assert!(peeked.contains("the gate is closed"), "{peeked}");
    wait_for(
        &b,
        "the failed invocation of `worker`",
        "return document.querySelector('#inv-table tr[data-function=worker][data-outcome=failed]')",
    );
    b.execute("document.querySelector('#queues').scrollIntoView()", vec![]);
    b.screenshot(&browser::artifact("console-deadletter"));

    // ── Open the gate, redrive from the page: the message is processed.
    let r = get(&format!("{url}/m/kv"), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    b.click(&b.find("tr[data-queue=jobs] button.redrive"));
    b.wait_text("#queue-message", WAIT, |t| {
        t.contains("Redrove 1 dead letter of jobs")
    });
    wait_for(
        &b,
        "no dead letters left in `jobs`",
        "const r = document.querySelector('tr[data-queue=jobs]'); return r && r.dataset.deadletters === '0'",
    );
    wait_for(
        &b,
        "a successful invocation of `worker`",
        "return document.querySelector('#inv-table tr[data-function=worker][data-outcome=ok]')",
    );
    b.execute(
        "document.querySelector('#invocations').scrollIntoView()",
        vec![],
    );
    b.click(&b.find("#inv-table tr[data-function=worker][data-outcome=ok]"));
    b.wait_text("#inv-logs", WAIT, |t| t.contains("handled gated-job"));
    b.wait_text("#queue-detail .dead-letters", WAIT, |t| {
        t.contains("No dead letters")
    });
    b.execute(
        "document.querySelector('#invocations').scrollIntoView()",
        vec![],
    );
    b.screenshot(&browser::artifact("console-redrive"));
    b.execute("window.scrollTo(0, document.body.scrollHeight)", vec![]);
    b.screenshot(&browser::artifact("console-streams-timers"));
    assert!(function_logs(dir, "worker").contains("handled gated-job"));

    // ── Replay the recorded failure from the page: the recorded outcome
    // and logs beside the new run's (the gate is open now).
    let failed_row = "#inv-table tr[data-function=worker][data-outcome=failed]";
    b.execute(
        &format!("document.querySelector('{failed_row}').scrollIntoView({{block: 'center'}})"),
        vec![],
    );
    b.click(&b.find(failed_row));
    b.wait_text("#inv-logs h3", WAIT, |t| t.contains("failed"));
    b.execute(
        "document.querySelector('#inv-logs button.replay').scrollIntoView({block: 'center'})",
        vec![],
    );
    b.click(&b.find("#inv-logs button.replay"));
    let replayed = b.wait_text("#inv-logs .replay-result .side.replayed", WAIT, |t| {
        t.contains("handled gated-job")
    });
    assert!(
        replayed.contains("ok") && replayed.contains(" replay "),
        "{replayed}"
    );
    let recorded = b.wait_text("#inv-logs .replay-result .side.recorded", WAIT, |t| {
        t.contains("failed")
    });
    assert!(recorded.contains("the gate is closed"), "{recorded}");
    b.execute(
        "document.querySelector('#invocations').scrollIntoView()",
        vec![],
    );
    b.screenshot(&browser::artifact("console-replay"));

    // ── The JSON behind the page: recent invocations and their logs.
    let inv = get(
        &format!("{url}/_gust/invocations?function=worker&limit=10"),
        &[("x-gust-key", &key)],
    )
    .json();
    let list = inv["invocations"].as_array().unwrap();
    assert!(list.iter().all(|i| i["function"] == "worker"), "{inv}");
    let ok = list.iter().find(|i| i["outcome"] == "ok").expect("ok");
    let failed = list
        .iter()
        .find(|i| i["outcome"] == "failed")
        .expect("failed");
    assert_eq!(failed["error"], "the gate is closed", "{inv}");
    assert_eq!(ok["trigger"], "queue");
    let id = ok["id"].as_str().unwrap();
    let lines = get(
        &format!("{url}/_gust/logs?invocation={id}&format=json"),
        &[("x-gust-key", &key)],
    );
    assert!(lines.body.contains("handled gated-job"), "{}", lines.body);
    let http = get(
        &format!("{url}/_gust/invocations?function=hit&limit=1"),
        &[("x-gust-key", &key)],
    )
    .json();
    assert_eq!(http["invocations"][0]["status"], 200, "{http}");
    assert_eq!(http["invocations"][0]["request"], "GET /m/kv", "{http}");
}

/// Behind the front of a multi-app `gust up`, each app's console works
/// under its prefix (`/<app>/_gust/console/`) with that app's key.
#[test]
fn each_app_of_a_folder_has_its_console_under_its_prefix() {
    let root = tempfile::tempdir().unwrap();
    for name in ["alpha", "beta"] {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("gust.toml"),
            format!(
                "[app]\nname = \"{name}\"\n[[function]]\nname = \"{name}-fn\"\nsource = \"m.wasm\"\ntrigger = {{ http = {{ route = \"/m/{{*rest}}\", auth = \"anonymous\" }} }}\nbindings = {{ store = {{ kv = \"s\" }} }}\n"
            ),
        )
        .unwrap();
        std::fs::copy(guest("misbehave"), dir.join("m.wasm")).unwrap();
    }
    let front = up(root.path(), &["--quiet", "--no-watch"]);
    let url = front.url.clone();
    let index = get(&format!("{url}/"), &[("accept", "text/html")]);
    assert!(
        index.body.contains("href=\"/beta/_gust/console/\""),
        "{}",
        index.body
    );
    let key = admin_key(&root.path().join("beta"));
    let r = get(&format!("{url}/beta/m/ok"), &[]);
    assert_eq!(r.status, 200);

    let b = Browser::start();
    b.goto(&format!("{url}/beta/_gust/console/"));
    b.type_text(&b.find("#key"), &key);
    b.click(&b.find("#login-button"));
    b.wait_text("#app-name", WAIT, |t| t == "beta");
    wait_for(
        &b,
        "beta's function",
        "return document.querySelector('article[data-function=\"beta-fn\"] .n-total')?.textContent === '1'",
    );
    wait_for(
        &b,
        "beta's invocation",
        "return document.querySelector('#inv-table tr[data-function=\"beta-fn\"]')",
    );
}
