//! End-to-end: `examples/file-etl` under a real `gust up`. Files are copied
//! with `cp` into the container folder `.gust/blobs/incoming/`, like a
//! person would; the stages validate → transform → load run through queues;
//! the reports over HTTP show the loaded rows and the recorded anomalies.
//! Copying a file again (new mtime, same content) or under another name
//! loads nothing twice.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The example's manifest with sources pointing back at the example.
fn app() -> TestApp {
    let example = repo().join("examples/file-etl");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    TestApp::new(&manifest.replace("source = \"functions/", &functions))
}

const JAN: &str = "\
order_id,date,customer,sku,quantity,unit_price
A-1001,2026-01-05,Acme Corp,sku-100,3,9.99
A-1002,06/01/2026,\"Smith,  Jones & Co\",SKU-200,1,1250
A-1003,2026-01-07,Acme Corp,sku-100,10,9.5

A-1004,2026-01-31,Globex,sku-300,2,0.75
";

const FEB: &str = "\
order_id,date,customer,sku,quantity,unit_price
B-2001,2026-02-01,Initech,sku-100,4,10
B-2002,30/02/2026,Initech,sku-100,4,10
B-2003,2026-02-03,Initech,sku-100,0,10
B-2004,2026-02-04,Initech,sku-100
B-2005,2026-02-05,\"Initech,sku-100,1,10
B-2006,2026-02-06,Umbrella,sku-900,10000,20000.00
A-1002,2026-02-07,Globex,sku-200,1,5.00
B-2007,2026-02-08,Hooli,sku-400,2,99.999
B-2008,2026-02-09,Hooli,sku-400,2,99.99
";

/// Copies `file` from the desk folder into the container with `cp`.
fn cp(app: &Path, file: &str, as_name: &str) {
    let inbox = app.join(".gust/blobs/incoming");
    std::fs::create_dir_all(&inbox).unwrap();
    let status = Command::new("cp")
        .arg(app.join("desk").join(file))
        .arg(inbox.join(as_name))
        .status()
        .unwrap();
    assert!(status.success());
}

fn report(url: &str, what: &str) -> Value {
    let r = get(&format!("{url}/api/{what}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// `(file, line, stage)` of every recorded anomaly.
fn anomalies(url: &str) -> BTreeSet<(String, u64, String)> {
    report(url, "anomalies")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["file"].as_str().unwrap().to_string(),
                a["line"].as_u64().unwrap(),
                a["stage"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn dropped_files_are_validated_transformed_loaded_once_and_anomalies_recorded() {
    let started = Instant::now();
    let app = app();
    let desk = app.path().join("desk");
    std::fs::create_dir_all(&desk).unwrap();
    std::fs::write(desk.join("jan.csv"), JAN).unwrap();
    std::fs::write(desk.join("feb.csv"), FEB).unwrap();
    std::fs::write(desk.join("notes.csv"), "id;when;who\n1;today;me\n").unwrap();
    std::fs::write(desk.join("readme.txt"), "not a sales file\n").unwrap();
    let host = up(app.path(), &["--quiet", "--no-watch"]);
    let url = host.url.as_str();
    eprintln!("gust up ready after {:?}", started.elapsed());

    // A good file: every record lands in `sales`, normalised.
    let t0 = Instant::now();
    cp(app.path(), "jan.csv", "jan.csv");
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(20), || {
        last = report(url, "sales");
        last["count"] == 4
    });
    assert!(ok, "jan.csv not loaded: {last:#}");
    eprintln!("jan.csv loaded after {:?}", t0.elapsed());
    let rows = last["items"].as_array().unwrap();
    assert_eq!(rows[1]["order_id"], "A-1002");
    assert_eq!(rows[1]["sold_on"], "2026-01-06");
    assert_eq!(rows[1]["customer"], "Smith, Jones & Co");
    assert_eq!(rows[1]["sku"], "SKU-200");
    assert_eq!(rows[1]["amount_cents"], 125_000);
    assert_eq!(rows[1]["source_file"], "jan.csv");
    assert_eq!(rows[1]["source_line"], 3);
    assert_eq!(last["total_cents"], 2997 + 125_000 + 9500 + 150);

    // A broken file, a file with the wrong header and a file the trigger
    // does not match.
    cp(app.path(), "feb.csv", "feb.csv");
    cp(app.path(), "notes.csv", "notes.csv");
    cp(app.path(), "readme.txt", "readme.txt");
    let expected: BTreeSet<(String, u64, String)> = [
        ("feb.csv", 3, "validate"),   // 30/02
        ("feb.csv", 4, "validate"),   // quantity 0
        ("feb.csv", 5, "validate"),   // 4 fields
        ("feb.csv", 6, "validate"),   // unterminated quote
        ("feb.csv", 7, "transform"),  // above the review limit
        ("feb.csv", 8, "load"),       // A-1002 again
        ("feb.csv", 9, "validate"),   // three decimals
        ("notes.csv", 1, "validate"), // wrong header
    ]
    .into_iter()
    .map(|(f, l, s)| (f.to_string(), l, s.to_string()))
    .collect();
    let mut seen = BTreeSet::new();
    let ok = eventually(Duration::from_secs(20), || {
        seen = anomalies(url);
        seen == expected && report(url, "files")["items"].as_array().unwrap().len() == 3
    });
    assert!(ok, "anomalies {seen:#?}\nfiles {:#}", report(url, "files"));
    let sales = report(url, "sales");
    assert_eq!(sales["count"], 6, "{sales:#}");
    let feb = report(url, "sales?file=feb.csv");
    let ids: Vec<&str> = feb["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["B-2001", "B-2008"]);
    let all = report(url, "anomalies");
    let reason = |line: u64| -> String {
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["file"] == "feb.csv" && a["line"] == line)
            .map(|a| a["reason"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(
        reason(3),
        "date `30/02/2026` is not a real date as YYYY-MM-DD or DD/MM/YYYY"
    );
    assert_eq!(
        reason(7),
        "amount 200000000.00 exceeds the review limit 1000000.00"
    );
    assert_eq!(reason(8), "order A-1002 was already loaded from jan.csv");
    let files = report(url, "files");
    let loaded: Vec<(String, i64, i64)> = files["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["records"].as_i64().unwrap(),
                f["loaded"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        loaded,
        [
            ("feb.csv".to_string(), 9, 2),
            ("jan.csv".to_string(), 4, 4),
            ("notes.csv".to_string(), 0, 0),
        ]
    );
    eprintln!("feb.csv, notes.csv done after {:?}", t0.elapsed());

    // Nothing twice: jan.csv copied again (a new mtime, so a new version for
    // the trigger) and under another name: the same content is skipped.
    std::thread::sleep(Duration::from_millis(1100));
    cp(app.path(), "jan.csv", "jan.csv");
    cp(app.path(), "jan.csv", "jan-again.csv");
    let ok = eventually(Duration::from_secs(20), || {
        let logs = function_logs(app.path(), "validate");
        logs.matches("already loaded; skipped").count() >= 2
    });
    assert!(
        ok,
        "validate did not skip the copies:\n{}",
        function_logs(app.path(), "validate")
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(report(url, "sales")["total_cents"], sales["total_cents"]);
    assert_eq!(report(url, "sales")["count"], 6);
    assert_eq!(report(url, "files")["items"].as_array().unwrap().len(), 3);
    assert_eq!(anomalies(url), expected);
    let logs = function_logs(app.path(), "validate");
    assert!(!logs.contains("readme"), "{logs}");
    assert_eq!(logs.matches("records valid").count(), 3, "{logs}");
    eprintln!("done after {:?}", started.elapsed());
}
