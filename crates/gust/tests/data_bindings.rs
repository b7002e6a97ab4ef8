//! End-to-end: the sql, table and topic bindings and the change-feed
//! trigger, through a real `gust up`. The `data` function (guest
//! `data-probe`) runs SQL, writes documents and publishes events over HTTP;
//! `projector` follows the table's change feed and `listener` subscribes to
//! the topic (both `event-probe`, which logs `handled <data>`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const MANIFEST: &str = r#"
[app]
name = "data-bindings"
[[function]]
name = "data"
source = "data.wasm"
trigger = { http = { route = "/data/{*rest}", auth = "anonymous" } }
bindings = { db = { sql = "main" }, docs = { table = "contacts" }, events = { topic = "news" }, files = { blob = "drop" } }
[[function]]
name = "projector"
source = "probe.wasm"
trigger = { changefeed = { table = "contacts", start = "beginning" } }
bindings = { seen = { kv = "projected" } }
[[function]]
name = "watcher"
source = "probe.wasm"
trigger = { blob = { container = "drop", path = "{name}.txt" } }
bindings = { seen = { kv = "watched" } }
[[function]]
name = "listener"
source = "probe.wasm"
trigger = { topic = { topic = "news" } }
bindings = { seen = { kv = "heard" } }
"#;

fn app() -> TestApp {
    let app = TestApp::new(MANIFEST);
    app.add_component("data.wasm", &guest("data-probe"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app
}

fn handled(app: &TestApp, function: &str) -> Vec<String> {
    function_logs(app.path(), function)
        .lines()
        .filter_map(|l| l.split("handled ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

fn sql(url: &str, op: &str, statement: &str, params: serde_json::Value) -> Reply {
    let body = json!({ "sql": statement, "params": params }).to_string();
    send(
        "POST",
        &format!("{url}/data/sql/{op}"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn sql_statements_run_against_sqlite_and_survive_a_restart() {
    let app = app();
    let mut host = up(app.path(), &["--quiet", "--no-watch"]);
    let r = sql(
        &host.url,
        "execute",
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)",
        json!([]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for (id, name, score) in [(1, "ada", 9.5), (2, "bob", 7.0)] {
        let r = sql(
            &host.url,
            "execute",
            "INSERT INTO people VALUES (?1, ?2, ?3)",
            json!([id, name, score]),
        );
        assert_eq!(r.json()["changed"], 1, "{}", r.body);
    }
    let r = sql(
        &host.url,
        "query",
        "SELECT name, score FROM people WHERE score > ?1 ORDER BY id",
        json!([8]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({ "columns": ["name", "score"], "rows": [["ada", 9.5]] })
    );

    // Bad SQL and constraint violations come back as errors naming the statement.
    let r = sql(&host.url, "query", "SELEC nothing", json!([]));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("SELEC nothing"),
        "{}",
        r.body
    );
    let r = sql(
        &host.url,
        "execute",
        "INSERT INTO people VALUES (1, 'dup', 0)",
        json!([]),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("UNIQUE"), "{}", r.body);

    // A binding the function did not declare is refused.
    let r = send("POST", &format!("{}/data/undeclared", host.url), &[], b"");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a sql binding"), "{}", r.body);

    assert!(app.path().join(".gust/data/sql/main.sqlite").is_file());
    assert_eq!(host.stop(), Some(0));
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    let r = sql(
        &host.url,
        "query",
        "SELECT count(*) AS n FROM people",
        json!([]),
    );
    assert_eq!(r.json()["rows"], json!([[2]]), "{}", r.body);
}

#[test]
fn table_writes_reach_the_change_feed_in_order_and_resume_after_a_restart() {
    let app = app();
    let mut host = up(app.path(), &["--quiet", "--no-watch"]);
    let docs = format!("{}/data/docs", host.url);
    for (key, body) in [("a", "a1"), ("b", "b1"), ("a", "a2")] {
        let r = send("PUT", &format!("{docs}/{key}"), &[], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = send("DELETE", &format!("{docs}/b"), &[], b"");
    assert_eq!(r.json()["deleted"], true);
    assert_eq!(get(&format!("{docs}/a"), &[]).body, "a2");
    assert_eq!(get(&format!("{docs}/b"), &[]).status, 404);

    let expected = ["a1", "b1", "a2", "deleted:b"];
    assert!(
        eventually(Duration::from_secs(20), || handled(&app, "projector").len()
            >= 4),
        "projector saw {:?}",
        handled(&app, "projector")
    );
    assert_eq!(handled(&app, "projector"), expected);

    // Restart: the checkpoint holds, so only the new change is delivered
    // (`gust logs` shows the running host's lines).
    assert_eq!(host.stop(), Some(0));
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    let r = send("PUT", &format!("{}/data/docs/c", host.url), &[], b"c1");
    assert_eq!(r.status, 200);
    assert!(
        eventually(Duration::from_secs(20), || !handled(&app, "projector")
            .is_empty()),
        "stderr:\n{}",
        host.stderr()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(handled(&app, "projector"), ["c1"]);
}

#[test]
fn functions_publish_to_topics_they_declared() {
    let app = app();
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    let r = send(
        "POST",
        &format!("{}/data/publish/news.posted", host.url),
        &[],
        b"extra",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        eventually(Duration::from_secs(20), || handled(&app, "listener")
            == ["extra"]),
        "listener saw {:?}",
        handled(&app, "listener")
    );
    let log = function_logs(app.path(), "listener");
    assert!(log.contains("source /gust/function/data"), "{log}");
}

#[test]
fn blobs_written_by_a_function_are_files_that_start_blob_triggers() {
    let app = app();
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    let blob = |name: &str| format!("{}/data/blob/{name}", host.url);
    let r = send("PUT", &blob("greeting.txt"), &[], b"hi-blob");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&blob("greeting.txt"), &[]).body, "hi-blob");
    assert_eq!(get(&blob("missing.txt"), &[]).status, 404);
    let file = app.path().join(".gust/blobs/drop/greeting.txt");
    assert_eq!(std::fs::read(&file).unwrap(), b"hi-blob");
    // Names cannot leave the container.
    let r = send("PUT", &blob("..%2Fescape.txt"), &[], b"x");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!app.path().join(".gust/blobs/escape.txt").exists());
    assert!(
        eventually(Duration::from_secs(20), || handled(&app, "watcher")
            == ["hi-blob"]),
        "watcher saw {:?}",
        handled(&app, "watcher")
    );
}
