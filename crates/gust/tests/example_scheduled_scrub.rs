//! End-to-end: `examples/scheduled-scrub` under a real `gust up`. The
//! example's own gust.toml runs, with the timer every 2 seconds instead of
//! every minute: seed good and bad rows over HTTP, wait for a firing, and
//! check that the bad rows are gone, the good rows untouched and the audit
//! log says what happened.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The example's manifest in a temporary app folder: sources point back at
/// the example's crates, the schedule fires every 2 seconds.
fn app() -> TestApp {
    let example = repo().join("examples/scheduled-scrub");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    let schedule = "schedule = \"0 * * * * *\"";
    assert!(
        manifest.contains(schedule),
        "the example's schedule changed"
    );
    let manifest = manifest
        .replace("source = \"functions/", &functions)
        .replace(schedule, "schedule = \"*/2 * * * * *\"");
    TestApp::new(&manifest)
}

fn report(url: &str) -> Value {
    let r = get(&format!("{url}/api/report"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn seed(url: &str, query: &str, body: &str) -> Reply {
    send(
        "POST",
        &format!("{url}/api/seed{query}"),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

/// Waits for a scrub run that changed rows; returns the report.
fn wait_for_changes(url: &str, runs_before: usize) -> Value {
    let mut last = Value::Null;
    let found = eventually(Duration::from_secs(20), || {
        last = report(url);
        let runs = last["runs"].as_array().unwrap();
        runs[..runs.len().saturating_sub(runs_before)]
            .iter()
            .any(|r| r["rows_changed"].as_i64() > Some(0))
    });
    assert!(found, "no scrub run changed rows: {last:#}");
    last
}

/// The audit rows as (rule, action, table, rows), oldest first.
fn audit(report: &Value) -> Vec<(String, String, String, i64)> {
    let mut rows: Vec<_> = report["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_string(),
                a["action"].as_str().unwrap().to_string(),
                a["table_name"].as_str().unwrap().to_string(),
                a["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

fn a(rule: &str, action: &str, table: &str, rows: i64) -> (String, String, String, i64) {
    (rule.into(), action.into(), table.into(), rows)
}

#[test]
fn the_timer_scrubs_bad_rows_keeps_good_ones_and_audits() {
    let started = Instant::now();
    let app = app();
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    let url = &host.url;
    eprintln!("gust up ready after {:?}", started.elapsed());

    // Clear JSON errors for bad input.
    let r = seed(url, "", "[1]");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("object"),
        "{r:?}"
    );
    let r = seed(url, "?reset=maybe", "");
    assert_eq!(r.status, 400, "{r:?}");
    let r = seed(url, "", r#"{"orders": [{"id": 1, "total": 3}]}"#);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("unknown column `total`"), "{r:?}");

    // Seed the demo data: 6 customers and 8 orders, 7 of the 14 rows bad.
    let r = seed(url, "", "");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.json()["inserted"],
        json!({ "customers": 6, "orders": 8 }),
        "{r:?}"
    );

    let after = wait_for_changes(url, 0);
    assert_eq!(
        after["customers"],
        json!([
            { "id": 1, "name": "Ada Lovelace", "email": "ada@example.com" },
            { "id": 2, "name": "Grace Hopper", "email": "grace@example.org" },
            { "id": 3, "name": "Alan Turing", "email": "alan.turing@example.com" },
            { "id": 4, "name": "Edsger Dijkstra", "email": null },
            { "id": 5, "name": "Barbara Liskov", "email": "barbara@example.net" },
        ]),
        "{after:#}"
    );
    assert_eq!(
        after["orders"],
        json!([
            { "id": 100, "customer_id": 1, "amount": 25.0, "placed_on": "2024-03-01" },
            { "id": 101, "customer_id": 2, "amount": 99.9, "placed_on": "2024-03-02" },
            { "id": 102, "customer_id": 3, "amount": 12.5, "placed_on": "2024-03-03" },
            { "id": 105, "customer_id": 4, "amount": 7.25, "placed_on": "2024-03-06" },
        ]),
        "{after:#}"
    );
    let expected = vec![
        a("duplicate-customer", "deleted", "customers", 1),
        a("email-normalised", "fixed", "customers", 1),
        a("email-cleared", "fixed", "customers", 1),
        a("duplicate-order", "deleted", "orders", 1),
        a("invalid-amount", "deleted", "orders", 1),
        a("orphan-order", "deleted", "orders", 2),
    ];
    assert_eq!(audit(&after), expected, "{after:#}");
    let runs = after["runs"].as_array().unwrap();
    let busy: Vec<_> = runs.iter().filter(|r| r["rows_changed"] != 0).collect();
    assert_eq!(busy.len(), 1, "{after:#}");
    assert_eq!(busy[0]["rows_changed"], 7);
    let run_at = busy[0]["run_at"].as_str().unwrap();
    assert!(
        after["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["run_at"] == run_at),
        "{after:#}"
    );

    // The next firing finds nothing to do and changes nothing.
    let runs = after["runs"].as_array().unwrap().len();
    let mut again = Value::Null;
    assert!(eventually(Duration::from_secs(10), || {
        again = report(url);
        again["runs"].as_array().unwrap().len() > runs
    }));
    let changed: i64 = again["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rows_changed"].as_i64().unwrap())
        .sum();
    assert_eq!(changed, 7, "later runs changed rows: {again:#}");
    assert_eq!(again["customers"], after["customers"]);
    assert_eq!(again["orders"], after["orders"]);
    assert_eq!(audit(&again), expected);

    // The legacy app writes more rows: a good one, an orphan and a bad email.
    let r = seed(
        url,
        "?reset=false",
        r#"{"orders": [{"id": 107, "customer_id": 5, "amount": 3.5, "placed_on": "2024-03-08"},
                       {"id": 108, "customer_id": 77, "amount": 1, "placed_on": "2024-03-08"}],
            "customers": [{"id": 6, "name": "Ken Thompson", "email": "ken@"}]}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let runs = again["runs"].as_array().unwrap().len();
    let last = wait_for_changes(url, runs);
    let orders: Vec<i64> = last["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(orders, [100, 101, 102, 105, 107], "{last:#}");
    assert_eq!(
        last["customers"][5],
        json!({ "id": 6, "name": "Ken Thompson", "email": null })
    );
    let mut expected = expected;
    expected.push(a("email-cleared", "fixed", "customers", 1));
    expected.push(a("orphan-order", "deleted", "orders", 1));
    assert_eq!(audit(&last), expected, "{last:#}");
    eprintln!("done after {:?}", started.elapsed());
}
