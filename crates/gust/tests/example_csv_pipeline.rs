//! End-to-end: `examples/csv-pipeline` under a real `gust up`. The sample
//! CSV is copied with `cp` into the container folder `.gust/blobs/uploads/`,
//! like a person would; a headless Chromium watches the dashboard served
//! from the app's `[[static]]` folder until its numbers and charts match
//! what this test computes from the CSV itself. The query API is checked
//! over HTTP, then dropping the same file again, a corrected version of
//! it, an HTTP upload and a file with the wrong columns show that nothing
//! is imported twice and that bad input is reported, not fatal.
//!
//! A second run keeps the container `uploads` in an S3 bucket (moto on
//! 127.0.0.1:9000, `--backend blob=s3://...`): files are dropped with
//! `PutObject` instead of `cp`, the browser is skipped, the HTTP checks are
//! the same, and the objects are then checked in the bucket with boto3.
//!
//! Every test runs against both versions of the app: `examples/csv-pipeline`
//! (functions in Rust) and `examples/csv-pipeline-py` (the same functions
//! in Python).

mod browser;
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use browser::Browser;
use common::*;
use serde_json::{Value, json};

/// The two versions of the example: Rust and Python functions.
const RUST: &str = "csv-pipeline";
const PYTHON: &str = "csv-pipeline-py";

/// Copies the example `name` into `dest` (its manifest with sources
/// pointing back at the example's functions, and its `public/` folder).
fn copy_example(name: &str, dest: &Path) {
    let example = repo().join("examples").join(name);
    std::fs::create_dir_all(dest.join("public")).unwrap();
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    std::fs::write(
        dest.join("gust.toml"),
        manifest.replace("source = \"functions/", &functions),
    )
    .unwrap();
    for entry in std::fs::read_dir(example.join("public")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join("public").join(entry.file_name())).unwrap();
    }
}

/// Copies `src` into the container as `name` with `cp`.
fn cp(app: &Path, src: &Path, name: &str) {
    let inbox = app.join(".gust/blobs/uploads");
    std::fs::create_dir_all(&inbox).unwrap();
    let status = Command::new("cp")
        .arg(src)
        .arg(inbox.join(name))
        .status()
        .unwrap();
    assert!(status.success());
}

/// What the test expects from a CSV, computed here on its own.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    rows: u64,
    units: i64,
    revenue: i64,
    by_region: BTreeMap<String, i64>,
    by_month: BTreeMap<String, i64>,
    by_product: BTreeMap<String, i64>,
    rejected_lines: Vec<u64>,
}

/// Splits a CSV line (quotes enclose commas; the sample has no `""`).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn real_date(d: &str) -> bool {
    let parts: Vec<u32> = d.split('-').filter_map(|p| p.parse().ok()).collect();
    let [y, m, day] = parts[..] else { return false };
    let days = match m {
        2 if y % 4 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return false,
    };
    d.len() == 10 && (1..=days).contains(&day)
}

fn cents(p: &str) -> Option<i64> {
    let (w, f) = p.split_once('.').unwrap_or((p, ""));
    if f.len() > 2 {
        return None;
    }
    Some(w.parse::<i64>().ok()? * 100 + format!("{f:0<2}").parse::<i64>().ok()?)
}

fn expected(csv: &str) -> Expected {
    let mut e = Expected::default();
    for (i, line) in csv.lines().enumerate().skip(1) {
        let f = fields(line);
        let (date, region, product) = (&f[0], &f[1], &f[2]);
        let units: i64 = f[3].parse().unwrap_or(0);
        let price = cents(&f[4]);
        if !real_date(date) || units < 1 || price.is_none() {
            e.rejected_lines.push(i as u64 + 1);
            continue;
        }
        let revenue = units * price.unwrap();
        e.rows += 1;
        e.units += units;
        e.revenue += revenue;
        *e.by_region.entry(region.clone()).or_default() += revenue;
        *e.by_month.entry(date[..7].to_string()).or_default() += revenue;
        *e.by_product.entry(product.clone()).or_default() += revenue;
    }
    e
}

/// 1234567 -> "12,345.67", as the dashboard writes money.
fn money(cents: i64) -> String {
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}.{:02}", cents % 100)
}

fn summary(url: &str) -> Value {
    let r = get(&format!("{url}/api/summary"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn imports(url: &str) -> Vec<Value> {
    get(&format!("{url}/api/imports"), &[]).json()["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// `{label: cents}` of the bars in the SVG chart `id`.
fn bars(b: &Browser, id: &str) -> BTreeMap<String, i64> {
    let v = b.execute(
        "return [...document.querySelectorAll(`#${arguments[0]} g[data-label]`)]
           .map((g) => [g.dataset.label, Number(g.dataset.value)]);",
        vec![json!(id)],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_i64().unwrap()))
        .collect()
}

fn pairs(v: &Value, key: &str) -> BTreeMap<String, i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[key].as_str().unwrap().to_string(),
                r["revenue_cents"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_dropped_csv_becomes_rows_and_a_dashboard_in_a_real_browser() {
    dropped_csv_becomes_rows_and_a_dashboard(RUST);
}

#[test]
fn python_a_dropped_csv_becomes_rows_and_a_dashboard_in_a_real_browser() {
    dropped_csv_becomes_rows_and_a_dashboard(PYTHON);
}

fn dropped_csv_becomes_rows_and_a_dashboard(example: &str) {
    let sample = repo().join("examples/csv-pipeline/sample/sales-2026-q1.csv");
    let csv = std::fs::read_to_string(&sample).unwrap();
    let want = expected(&csv);
    assert_eq!(want.rejected_lines, vec![19, 27], "the sample changed");

    let app = tempfile::tempdir().unwrap();
    copy_example(example, app.path());
    let mut host = up(app.path(), &["--quiet"]);
    let url = host.url.clone();
    assert_eq!(summary(&url)["rows"], 0);

    // ── The dashboard, empty, then filled once the file is dropped.
    let b = Browser::start();
    b.goto(&format!("{url}/"));
    b.wait_text("#kpi-rows", Duration::from_secs(20), |t| t == "0");
    assert!(b.text_of("#empty").contains("No data yet"));
    cp(app.path(), &sample, "sales-2026-q1.csv");
    b.wait_text("#kpi-revenue", Duration::from_secs(60), |t| {
        t == money(want.revenue)
    });
    assert_eq!(b.text_of("#kpi-rows"), want.rows.to_string());
    assert_eq!(b.text_of("#kpi-files"), "1");
    assert_eq!(bars(&b, "chart-region"), want.by_region);
    assert_eq!(bars(&b, "chart-month"), want.by_month);
    let top = want.by_product.iter().max_by_key(|(_, v)| **v).unwrap();
    let first = b.execute(
        "return [...document.querySelector('#products tbody tr').cells].map((c) => c.textContent);",
        vec![],
    );
    assert_eq!(first[0], json!(top.0));
    assert_eq!(first[2], json!(money(*top.1)));
    let import_row = b.text_of("#imports tbody tr");
    assert!(import_row.contains("sales-2026-q1.csv"), "{import_row}");
    assert!(
        import_row.contains("line 19: date `2026-02-30`"),
        "{import_row}"
    );
    assert!(import_row.contains("line 27: units 0"), "{import_row}");
    assert!(b.text_of("#empty").is_empty(), "the empty note is hidden");
    b.screenshot(&browser::artifact(example));
    drop(b);

    after_the_first_import(&url, app.path(), &csv, &|src, name| {
        cp(app.path(), src, name)
    });
    assert_eq!(host.stop(), Some(0));
}

/// The scenario once the sample is imported, shared by both runs: the
/// query API, the same file again, a corrected version, an HTTP upload and
/// a file with the wrong columns. `drop_file(src, name)` puts a file into
/// the container `uploads` the way a person would.
fn after_the_first_import(url: &str, app: &Path, csv: &str, drop_file: &dyn Fn(&Path, &str)) {
    let want = expected(csv);
    let url = url.to_owned();
    let sample = repo().join("examples/csv-pipeline/sample/sales-2026-q1.csv");

    // ── The query API says the same.
    let s = summary(&url);
    assert_eq!(s["rows"], want.rows);
    assert_eq!(s["units"], want.units);
    assert_eq!(s["revenue_cents"], want.revenue);
    assert_eq!(pairs(&s["by_region"], "region"), want.by_region);
    assert_eq!(pairs(&s["by_month"], "month"), want.by_month);
    assert_eq!(pairs(&s["top_products"], "product"), want.by_product);
    let first = &imports(&url)[0];
    assert_eq!(
        (
            &first["status"],
            &first["rows"],
            &first["rejected"],
            &first["records"]
        ),
        (
            &json!("imported"),
            &json!(want.rows),
            &json!(2),
            &json!(want.rows + 2)
        )
    );

    // ── The same file again (a new version by mtime, same content): skipped.
    std::thread::sleep(Duration::from_millis(1100));
    drop_file(&sample, "sales-2026-q1.csv");
    assert!(
        eventually(Duration::from_secs(30), || function_logs(app, "import-csv")
            .contains("content unchanged")),
        "{}",
        function_logs(app, "import-csv")
    );
    assert_eq!(summary(&url)["rows"], want.rows);

    // ── A corrected version under the same name replaces its rows.
    let desk = tempfile::tempdir().unwrap();
    let fixed = desk.path().join("fixed.csv");
    let fixed_csv = csv.replace("2026-02-30", "2026-02-28");
    std::fs::write(&fixed, &fixed_csv).unwrap();
    let want_fixed = expected(&fixed_csv);
    drop_file(&fixed, "sales-2026-q1.csv");
    assert!(
        eventually(Duration::from_secs(30), || summary(&url)["rows"]
            == want_fixed.rows),
        "{}",
        summary(&url)
    );
    assert_eq!(summary(&url)["revenue_cents"], want_fixed.revenue);

    // ── Upload over HTTP: the function writes the blob, the trigger imports it.
    let extra = "date,region,product,units,unit_price\n2026-04-01,North,Widget,10,19.90\n";
    let r = send(
        "PUT",
        &format!("{url}/api/uploads/april.csv"),
        &[("content-type", "text/csv")],
        extra.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert!(
        eventually(Duration::from_secs(30), || summary(&url)["files"] == 2),
        "{}",
        summary(&url)
    );
    let s = summary(&url);
    assert_eq!(s["rows"], want_fixed.rows + 1);
    assert_eq!(s["revenue_cents"], want_fixed.revenue + 19_900);
    let bad = send("PUT", &format!("{url}/api/uploads/notes.txt"), &[], b"x");
    assert_eq!(bad.status, 400, "{bad:?}");

    // ── Wrong columns: recorded as failed, nothing imported, host serving.
    let wrong = desk.path().join("wrong.csv");
    std::fs::write(
        &wrong,
        "day,region,product,qty\n2026-01-01,North,Widget,1\n",
    )
    .unwrap();
    drop_file(&wrong, "wrong.csv");
    let failed = |items: &[Value]| {
        items
            .iter()
            .find(|i| i["file"] == "wrong.csv")
            .filter(|i| i["status"] == "failed")
            .cloned()
    };
    assert!(
        eventually(Duration::from_secs(30), || failed(&imports(&url)).is_some()),
        "{:?}",
        imports(&url)
    );
    let record = failed(&imports(&url)).unwrap();
    assert!(
        record["errors"][0]
            .as_str()
            .unwrap()
            .contains("no column `date`"),
        "{record}"
    );
    assert_eq!(summary(&url)["rows"], want_fixed.rows + 1);
    assert_eq!(get(&format!("{url}/api/nothing"), &[]).status, 404);
}

/// The moto S3 server the engine run uses.
const S3_ENDPOINT: &str = "http://127.0.0.1:9000";

/// Runs a boto3 snippet with `s3` (a client for moto) and `bucket` defined,
/// and `sys.argv[1:]` = `args`; returns its stdout.
fn boto3(bucket: &str, script: &str, args: &[&str]) -> String {
    let program = format!(
        "import sys, boto3\n\
         s3 = boto3.client('s3', endpoint_url='{S3_ENDPOINT}', aws_access_key_id='test',\n\
                           aws_secret_access_key='test', region_name='us-east-1')\n\
         bucket = '{bucket}'\n{script}"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An S3 bucket on moto, emptied and deleted when this goes.
struct Bucket(String);

impl Bucket {
    fn create(name: &str) -> Self {
        boto3(name, "s3.create_bucket(Bucket=bucket)", &[]);
        Self(name.to_owned())
    }

    /// The keys under `prefix`, in order.
    fn keys(&self, prefix: &str) -> Vec<String> {
        boto3(
            &self.0,
            "for o in s3.list_objects_v2(Bucket=bucket, Prefix=sys.argv[1]).get('Contents', []):\n    print(o['Key'])",
            &[prefix],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    fn get(&self, key: &str) -> String {
        boto3(
            &self.0,
            "sys.stdout.write(s3.get_object(Bucket=bucket, Key=sys.argv[1])['Body'].read().decode())",
            &[key],
        )
    }

    fn put(&self, key: &str, file: &Path) {
        boto3(
            &self.0,
            "s3.put_object(Bucket=bucket, Key=sys.argv[1], Body=open(sys.argv[2], 'rb').read())",
            &[key, file.to_str().unwrap()],
        );
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        boto3(
            &self.0,
            "for o in s3.list_objects_v2(Bucket=bucket).get('Contents', []):\n    s3.delete_object(Bucket=bucket, Key=o['Key'])\ns3.delete_bucket(Bucket=bucket)",
            &[],
        );
    }
}

#[test]
fn the_uploads_container_on_s3_imports_the_same() {
    uploads_container_on_s3_imports_the_same(RUST);
}

#[test]
fn python_the_uploads_container_on_s3_imports_the_same() {
    uploads_container_on_s3_imports_the_same(PYTHON);
}

fn uploads_container_on_s3_imports_the_same(example: &str) {
    let started = Instant::now();
    let sample = repo().join("examples/csv-pipeline/sample/sales-2026-q1.csv");
    let csv = std::fs::read_to_string(&sample).unwrap();
    let want = expected(&csv);

    let unique = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let bucket = Bucket::create(&format!("gust-csv-{unique}"));
    let name = format!("csv-pipeline-{unique}");
    let app = tempfile::tempdir().unwrap();
    copy_example(example, app.path());
    let manifest = std::fs::read_to_string(app.path().join("gust.toml")).unwrap();
    let app_name = format!("name = \"{example}\"");
    assert!(manifest.contains(&app_name));
    std::fs::write(
        app.path().join("gust.toml"),
        manifest.replace(&app_name, &format!("name = \"{name}\"")),
    )
    .unwrap();
    let backend = format!(
        "blob=s3://{}?endpoint={S3_ENDPOINT}&access_key_id=test&secret_access_key=test&region=us-east-1",
        bucket.0
    );
    let mut host = up(app.path(), &["--quiet", "--backend", &backend]);
    eprintln!("gust up ready after {:?}", started.elapsed());
    let url = host.url.clone();
    assert_eq!(summary(&url)["rows"], 0);

    // Files reach the container as objects `<app>/uploads/<name>`.
    let prefix = format!("{name}/uploads/");
    let drop_file = |src: &Path, file: &str| bucket.put(&format!("{prefix}{file}"), src);
    drop_file(&sample, "sales-2026-q1.csv");
    assert!(
        eventually(Duration::from_secs(60), || summary(&url)["rows"]
            == want.rows),
        "{}",
        summary(&url)
    );
    assert_eq!(summary(&url)["files"], 1);
    after_the_first_import(&url, app.path(), &csv, &drop_file);
    assert_eq!(host.stop(), Some(0));

    // The bucket holds exactly the three files, the HTTP upload included
    // (written by upload-csv through the blob binding), and nothing was
    // written to the embedded container folder.
    assert_eq!(
        bucket.keys(&format!("{name}/")),
        ["april.csv", "sales-2026-q1.csv", "wrong.csv"].map(|f| format!("{prefix}{f}"))
    );
    assert_eq!(
        bucket.get(&format!("{prefix}april.csv")),
        "date,region,product,units,unit_price\n2026-04-01,North,Widget,10,19.90\n"
    );
    assert_eq!(
        bucket.get(&format!("{prefix}sales-2026-q1.csv")),
        csv.replace("2026-02-30", "2026-02-28")
    );
    assert!(!app.path().join(".gust/blobs/uploads/april.csv").exists());
    eprintln!("done after {:?}", started.elapsed());
}
