//! End-to-end: `examples/scheduled-scrub` under a real `gust up`. The
//! example's own gust.toml runs, with the timer every 2 seconds instead of
//! every minute: seed good and bad rows over HTTP, wait for a firing, and
//! check that the bad rows are gone, the good rows untouched and the audit
//! log says what happened.
//!
//! A second run cleans a MariaDB database instead (`--backend
//! sql=mysql://.../legacy_<random>`): the same manifest and functions, the
//! legacy tables created and seeded with the `mariadb` CLI, the result
//! checked with it too, then the same HTTP scenario. A third runs the HTTP
//! scenario on a PostgreSQL schema (`?schema=legacy_<random>`), checked
//! with `psql`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};

/// The example's manifest in a temporary app folder: sources point back at
/// the example's crates, the schedule fires every 2 seconds.
fn app() -> TestApp {
    TestApp::new(&manifest())
}

fn manifest() -> String {
    let example = repo().join("examples/scheduled-scrub");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    let schedule = "schedule = \"0 * * * * *\"";
    assert!(
        manifest.contains(schedule),
        "the example's schedule changed"
    );
    manifest
        .replace("source = \"functions/", &functions)
        .replace(schedule, "schedule = \"*/2 * * * * *\"")
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
    // One report is several queries, not one snapshot: the one that saw the
    // run may have read the tables just before that run committed. The
    // run's changes are committed now, so read everything again.
    report(url)
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
    eprintln!("gust up ready after {:?}", started.elapsed());
    scenario(&host.url);
    eprintln!("done after {:?}", started.elapsed());
}

/// The HTTP scenario both runs share: bad input, the demo seed, a scrub,
/// a quiet second scrub, more bad rows, another scrub.
fn scenario(url: &str) {
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
}

/// Runs `sql` with the `mariadb` CLI (batch mode, no column names), in
/// `database` if given; `None` when it fails.
fn mariadb(database: Option<&str>, sql: &str) -> Option<String> {
    let mut cmd = Command::new("mariadb");
    cmd.args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-N", "-B"]);
    if let Some(database) = database {
        cmd.args(["-D", database]);
    }
    let out = cmd.args(["-e", sql]).output().expect("run the mariadb CLI");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A MariaDB database `legacy_<pid>_<random>`, dropped when this goes.
struct LegacyDatabase(String);

impl LegacyDatabase {
    fn create() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("legacy_{}_{nanos}", std::process::id());
        mariadb(None, &format!("CREATE DATABASE {name}"))
            .expect("create a MariaDB database (is MariaDB up on 127.0.0.1:3306?)");
        Self(name)
    }

    /// Runs `sql` in the database; panics when it fails.
    fn run(&self, sql: &str) -> String {
        mariadb(Some(&self.0), sql).unwrap_or_else(|| panic!("mariadb failed: {sql}"))
    }

    /// The result rows of `sql`, each as its tab-separated columns.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        self.run(sql)
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for LegacyDatabase {
    fn drop(&mut self) {
        let _ = mariadb(None, &format!("DROP DATABASE IF EXISTS {}", self.0));
    }
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

#[test]
fn the_same_functions_scrub_a_mariadb_database() {
    let started = Instant::now();
    let db = LegacyDatabase::create();
    // The legacy app's tables (as `POST /api/seed` creates them) with its
    // rubbish in them, written with the mariadb CLI.
    db.run(
        "CREATE TABLE customers (row_id INTEGER NOT NULL, id INTEGER, name VARCHAR(255),
                                 email VARCHAR(255));
         CREATE TABLE orders (row_id INTEGER NOT NULL, id INTEGER, customer_id INTEGER,
                              amount DOUBLE PRECISION, placed_on VARCHAR(255));
         INSERT INTO customers VALUES
             (1, 1, 'Ada', 'ada@example.com'),
             (2, 2, 'Grace', '  Grace@Example.ORG'),  -- fixable email
             (3, 3, 'Alan', 'alan@'),                 -- invalid email
             (4, 2, 'Grace again', 'grace@example.org'), -- duplicate id 2
             (5, 4, 'Edsger', 'edsger@example.net');
         INSERT INTO orders VALUES
             (1, 100, 1, 10.5, '2024-01-01'),
             (2, 101, 2, -5, '2024-01-02'),    -- negative amount
             (3, 102, 9, 3, '2024-01-03'),     -- no customer 9
             (4, 100, 1, 10.5, '2024-01-01'),  -- duplicate id 100
             (5, 103, NULL, 1, '2024-01-04'),  -- no customer at all
             (6, 104, 4, NULL, '2024-01-05'),  -- missing amount
             (7, 105, 4, 2.5, '2024-01-06');",
    );

    // The example's manifest unchanged but for the schedule and a unique
    // app name; every sql resource is the database above.
    let name = format!(
        "scheduled-scrub-{}-{}",
        std::process::id(),
        &db.0[db.0.rfind('_').unwrap() + 1..]
    );
    let manifest = manifest();
    assert!(manifest.contains("name = \"scheduled-scrub\""));
    let app = TestApp::new(
        &manifest.replace("name = \"scheduled-scrub\"", &format!("name = \"{name}\"")),
    );
    let backend = format!("sql=mysql://root@127.0.0.1:3306/{}", db.0);
    let host = up(
        app.path(),
        &["--quiet", "--no-watch", "--backend", &backend],
    );
    eprintln!("gust up ready after {:?}", started.elapsed());

    // The timer fires (on startup, then every 2 s) and cleans the tables.
    let cleaned = eventually(Duration::from_secs(20), || {
        mariadb(
            Some(&db.0),
            "SELECT count(*) FROM scrub_runs WHERE rows_changed > 0",
        )
        .is_some_and(|n| n.trim() != "0")
    });
    assert!(
        cleaned,
        "no scrub run changed rows; stderr:\n{}",
        host.stderr()
    );
    assert_eq!(
        db.rows("SELECT row_id, id, name, coalesce(email, 'NULL') FROM customers ORDER BY row_id"),
        strings(&[
            &["1", "1", "Ada", "ada@example.com"],
            &["2", "2", "Grace", "grace@example.org"],
            &["3", "3", "Alan", "NULL"],
            &["5", "4", "Edsger", "edsger@example.net"],
        ])
    );
    assert_eq!(
        db.rows("SELECT row_id, id FROM orders ORDER BY row_id"),
        strings(&[&["1", "100"], &["7", "105"]])
    );
    assert_eq!(
        db.rows("SELECT rule, action, table_name, `rows` FROM scrub_audit ORDER BY id"),
        strings(&[
            &["duplicate-customer", "deleted", "customers", "1"],
            &["email-normalised", "fixed", "customers", "1"],
            &["email-cleared", "fixed", "customers", "1"],
            &["duplicate-order", "deleted", "orders", "1"],
            &["invalid-amount", "deleted", "orders", "2"],
            &["orphan-order", "deleted", "orders", "2"],
        ])
    );
    assert_eq!(
        db.rows("SELECT rows_changed FROM scrub_runs WHERE rows_changed > 0"),
        strings(&[&["8"]])
    );

    // Then the embedded test's scenario, over HTTP, on the same database
    // (its seed drops and recreates the tables).
    scenario(&host.url);
    assert_eq!(
        db.rows("SELECT id FROM orders ORDER BY row_id"),
        strings(&[&["100"], &["101"], &["102"], &["105"], &["107"]])
    );
    assert_eq!(
        db.rows("SELECT count(*), sum(`rows`) FROM scrub_audit"),
        strings(&[&["8", "9"]])
    );
    eprintln!("done after {:?}", started.elapsed());
}

/// Runs `sql` with `psql` on the test database (unaligned, tuples only);
/// `None` when it fails.
fn psql(sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args([
            POSTGRES_URL,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL schema `legacy_<pid>_<random>`, dropped when this goes.
struct LegacySchema(String);

impl Drop for LegacySchema {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

#[test]
fn the_same_functions_scrub_a_postgres_schema() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = LegacySchema(format!("legacy_{}_{nanos}", std::process::id()));
    psql(&format!("CREATE SCHEMA {}", schema.0))
        .expect("create a schema (is PostgreSQL up on 127.0.0.1:5432?)");
    let name = format!("scheduled-scrub-{}-{nanos}", std::process::id());
    let app = TestApp::new(
        &manifest().replace("name = \"scheduled-scrub\"", &format!("name = \"{name}\"")),
    );
    let backend = format!("sql={POSTGRES_URL}?schema={}", schema.0);
    let host = up(
        app.path(),
        &["--quiet", "--no-watch", "--backend", &backend],
    );
    scenario(&host.url);
    let table = |t: &str| format!("{}.{t}", schema.0);
    assert_eq!(
        psql(&format!(
            "SELECT id FROM {} ORDER BY row_id",
            table("orders")
        ))
        .unwrap(),
        "100\n101\n102\n105\n107\n"
    );
    assert_eq!(
        psql(&format!(
            "SELECT id, coalesce(email, 'NULL') FROM {} ORDER BY row_id",
            table("customers")
        ))
        .unwrap(),
        "1|ada@example.com\n2|grace@example.org\n3|alan.turing@example.com\n4|NULL\n\
         5|barbara@example.net\n6|NULL\n"
    );
    assert_eq!(
        psql(&format!(
            r#"SELECT count(*), sum("rows") FROM {}"#,
            table("scrub_audit")
        ))
        .unwrap(),
        "8|9\n"
    );
}
