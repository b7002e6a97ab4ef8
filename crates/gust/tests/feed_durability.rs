//! End-to-end durability of the stream and change-feed triggers: SIGKILL the
//! host while 10,000 records (or table writes) are being processed, restart
//! it on the same folder, and check that every one was processed at least
//! once. The duplicate count is printed (`--nocapture` shows it).
//!
//! As in `queue_durability.rs`, the consumer (`event-probe`, counting each
//! body in kv store `seen` and logging `handled <body>`) first follows
//! another source (`parked`), the 10,000 items are written, and a reload
//! points it at them, so the kill lands mid-flight.
//!
//! Each scenario also runs on an engine, with the same manifest (under an
//! app name unique to the run) and `gust up` flags: the stream on NATS
//! JetStream (`--nats`, so kv store `seen` is a NATS kv bucket too), the
//! change feed on PostgreSQL (`--postgres`: the table, its feed and kv).
//! There the tally reads kv store `seen` from the engine, the test checks
//! with the engine's own client (async-nats, `psql`) that the 10,000 records
//! or changes are stored there, and it deletes the app's data at the end.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;

/// Items written.
const ITEMS: usize = 10_000;
/// Processed items to wait for before the kill.
const KILL_AFTER: usize = 2_000;
/// Client threads writing.
const WRITERS: usize = 8;

const NATS: &str = "nats://127.0.0.1:4222";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test at a time: each uses the whole machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The body of item `i`.
fn body(i: usize) -> String {
    format!("m{i:05}")
}

/// What a scenario varies.
struct Scenario {
    label: &'static str,
    /// The app's name on the embedded store.
    name: &'static str,
    /// The manifest of app `name` with the consumer following `source`.
    manifest: fn(name: &str, source: &str) -> String,
    /// Writes item `i` to the running host at `url` (admin `key`).
    write: fn(url: &str, key: &str, i: usize),
}

/// Where the app's resources live.
#[derive(Clone, Copy)]
enum Engine {
    Embedded,
    /// `--nats`: queues, topics, streams, kv, leases, dedupe on NATS.
    Nats,
    /// `--postgres`: sql, tables and their feeds, kv, leases, dedupe.
    Postgres,
}

impl Engine {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Engine::Embedded => &[],
            Engine::Nats => &["--nats", NATS],
            Engine::Postgres => &["--postgres", POSTGRES],
        }
    }

    /// Every `(key, count)` in kv store `store` of app `name`, read where
    /// the host kept it (after the host stopped).
    fn kv_counts(self, dir: &std::path::Path, name: &str, store: &str) -> Vec<(String, u64)> {
        match self {
            Engine::Embedded => kv_counts(dir, store),
            Engine::Nats => nats_kv_counts(NATS, name, store),
            Engine::Postgres => pg::kv_counts(name, store),
        }
    }
}

/// Runs `s` on `engine`, then `in_engine` with the app's name (checks with
/// the engine's own client, before the app's engine data is deleted).
fn run(s: &Scenario, engine: Engine, in_engine: fn(name: &str)) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let name = match engine {
        Engine::Embedded => s.name.to_string(),
        _ => unique_name(s.name),
    };
    // Deletes the app's engine data however the test ends.
    let _cleanup = Cleanup(engine, name.clone());
    let app = TestApp::new(&(s.manifest)(&name, "parked"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app.add_component("data.wasm", &guest("data-probe"));
    let dir = app.path();
    let mut args = vec!["--quiet", "--no-watch"];
    args.extend(engine.flags());

    let mut first = up(dir, &args);
    let key = admin_key(dir);
    let (url, write_key, write) = (first.url.clone(), key.clone(), s.write);
    let writing = Instant::now();
    in_parallel(ITEMS, WRITERS, move |i| write(&url, &write_key, i));
    let write_time = writing.elapsed();
    app.write("gust.toml", &(s.manifest)(&name, "jobs"));
    let r = send(
        "POST",
        &format!("{}/_gust/reload", first.url),
        &[("x-gust-key", &key)],
        b"",
    );
    assert_eq!(r.status, 200, "reload: {}", r.body);
    let handled = || logged_bodies(dir, "consumer");
    assert!(
        eventually(Duration::from_secs(60), || handled().1.len() >= KILL_AFTER),
        "fewer than {KILL_AFTER} handled; stderr:\n{}",
        first.stderr()
    );

    let status = std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(eventually(Duration::from_secs(10), || !first.alive()));
    let (at_kill, distinct_at_kill) = handled();
    assert!(
        distinct_at_kill.len() < ITEMS,
        "all {ITEMS} were processed before the kill came: the test proves nothing"
    );

    let restarted = Instant::now();
    let mut second = up(dir, &args);
    let all_done = eventually(Duration::from_secs(120), || handled().1.len() >= ITEMS);
    let drain_time = restarted.elapsed();
    let stderr = second.stderr();
    assert_eq!(
        second.stop(),
        Some(0),
        "second host did not stop cleanly:\n{stderr}"
    );

    let Tally {
        lost,
        duplicates,
        distinct,
    } = tally_counts(&engine.kv_counts(dir, &name, "seen"), (0..ITEMS).map(body));
    println!(
        "{}{} durability: {ITEMS} items written in {:.2}s ({:.0}/s, {WRITERS} threads, \
         a connection per write); {at_kill} handled when SIGKILLed; \
         restart drained the rest in {:.2}s; lost {}; duplicates {duplicates}; whole test {:.1}s",
        s.label,
        match engine {
            Engine::Embedded => "",
            Engine::Nats => " [nats]",
            Engine::Postgres => " [postgres]",
        },
        write_time.as_secs_f64(),
        ITEMS as f64 / write_time.as_secs_f64(),
        drain_time.as_secs_f64(),
        lost.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        lost.is_empty(),
        "{} of {ITEMS} were never processed (first: {:?}); all handled: {all_done}\nstderr:\n{stderr}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(distinct, ITEMS, "unexpected keys in kv store `seen`");
    assert!(all_done);
    in_engine(&name);
}

/// 10,000 records appended to stream `jobs` through the admin API.
const STREAM: Scenario = Scenario {
    label: "stream",
    name: "stream-durability",
    manifest: |name, source| {
        format!(
            r#"
[app]
name = "{name}"
[[function]]
name = "consumer"
source = "probe.wasm"
trigger = {{ stream = {{ stream = "{source}", start = "earliest", batch_size = 100 }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
"#
        )
    },
    write: |url, key, i| {
        let r = send(
            "POST",
            &format!("{url}/_gust/streams/jobs/records?key=k{}", i % 64),
            &[("x-gust-key", key), ("content-type", "text/plain")],
            body(i).as_bytes(),
        );
        assert_eq!(r.status, 201, "append {i}: {}", r.body);
    },
};

/// 10,000 puts to table `jobs` through an HTTP function.
const FEED: Scenario = Scenario {
    label: "change feed",
    name: "feed-durability",
    manifest: |name, source| {
        format!(
            r#"
[app]
name = "{name}"
[[function]]
name = "writer"
source = "data.wasm"
trigger = {{ http = {{ route = "/data/{{*rest}}", auth = "anonymous" }} }}
bindings = {{ docs = {{ table = "jobs" }} }}
[[function]]
name = "consumer"
source = "probe.wasm"
trigger = {{ changefeed = {{ table = "{source}", start = "beginning" }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
"#
        )
    },
    write: |url, _key, i| {
        let r = send(
            "PUT",
            &format!("{url}/data/docs/k{i}"),
            &[],
            body(i).as_bytes(),
        );
        assert_eq!(r.status, 200, "put {i}: {}", r.body);
    },
};

#[test]
fn sigkill_mid_stream_loses_no_record() {
    run(&STREAM, Engine::Embedded, |_| {});
}

#[test]
fn sigkill_mid_change_feed_loses_no_change() {
    run(&FEED, Engine::Embedded, |_| {});
}

#[test]
fn sigkill_mid_stream_loses_no_record_on_nats() {
    run(&STREAM, Engine::Nats, |name| {
        // Every record is in the stream's partitions on the server.
        let records = nats::records(name, "jobs");
        let expected: HashSet<(String, String)> = (0..ITEMS)
            .map(|i| (format!("k{}", i % 64), body(i)))
            .collect();
        println!(
            "stream [nats]: {} records in the server's partition streams",
            records.len()
        );
        assert_eq!(records.len(), ITEMS, "records stored in NATS");
        let stored: HashSet<(String, String)> = records.into_iter().collect();
        assert_eq!(stored, expected, "the records stored in NATS");
    });
}

#[test]
fn sigkill_mid_change_feed_loses_no_change_on_postgres() {
    run(&FEED, Engine::Postgres, |name| {
        // Every put is a document and a change row in the app's schema.
        let schema = gust_backends::postgres::schema_name(name);
        let docs = pg::query(&format!(
            "SELECT count(*) FROM {schema}.table_docs WHERE tbl = 'jobs' \
         AND convert_from(body, 'UTF8') = 'm' || lpad(substr(key, 2), 5, '0')"
        ));
        let changes = pg::query(&format!(
            "SELECT count(*) || ' ' || count(DISTINCT key) FROM {schema}.table_changes \
         WHERE tbl = 'jobs' AND NOT deleted \
         AND convert_from(body, 'UTF8') = 'm' || lpad(substr(key, 2), 5, '0')"
        ));
        println!("change feed [postgres]: {docs} documents, {changes} (changes, keys) in {schema}");
        assert_eq!(docs, ITEMS.to_string(), "documents in PostgreSQL");
        assert_eq!(changes, format!("{ITEMS} {ITEMS}"), "changes in PostgreSQL");
    });
}

/// `<base>-<pid>-<random>`: an app name no other run uses.
fn unique_name(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{base}-{}-{nanos:x}", std::process::id())
}

/// Deletes app `.1`'s data from engine `.0` when dropped (never panics).
struct Cleanup(Engine, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self.0 {
            Engine::Embedded => {}
            Engine::Nats => nats::delete_app(&self.1),
            Engine::Postgres => pg::delete_app(&self.1),
        }
    }
}

/// NATS JetStream, read with async-nats.
mod nats {
    use super::*;
    use async_nats::jetstream;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Runtime::new().unwrap().block_on(f)
    }

    /// The JetStream name of partition `p` of stream `stream` of app `name`.
    fn partition_stream(client: async_nats::Client, name: &str, stream: &str, p: u32) -> String {
        let prefix = gust_backends::services::nats_prefix(name);
        gust_backends::nats::NatsStreams::with_client(client, &prefix)
            .unwrap()
            .partition_stream_name(stream, p)
    }

    /// The app's stream-name prefix (`<PREFIX>_`), as Gust builds it.
    fn stream_prefix(client: async_nats::Client, name: &str) -> String {
        let p0 = partition_stream(client, name, "x", 0);
        p0.strip_suffix("S_x_P0")
            .expect("partition name")
            .to_string()
    }

    /// Every record `(key, body)` in the partitions of stream `stream` of
    /// app `name`, read from the JetStream streams with ordered consumers.
    pub fn records(name: &str, stream: &str) -> Vec<(String, String)> {
        block_on(async {
            let client = async_nats::connect(NATS).await.expect("connect to NATS");
            let js = jetstream::new(client.clone());
            let base = partition_stream(client, name, stream, 0);
            let base = base.strip_suffix('0').unwrap();
            let names: Vec<String> = js
                .stream_names()
                .map(|n| n.expect("stream name"))
                .filter(|n| {
                    let n = n.clone();
                    async move {
                        n.strip_prefix(base)
                            .is_some_and(|p| p.parse::<u32>().is_ok())
                    }
                })
                .collect()
                .await;
            assert!(!names.is_empty(), "no partition streams {base}*");
            let mut out = Vec::new();
            for partition in names {
                let mut s = js.get_stream(&partition).await.expect("stream");
                let count = s.info().await.expect("info").state.messages as usize;
                let consumer = s
                    .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
                    .await
                    .expect("consumer");
                let mut messages = consumer.messages().await.expect("messages");
                for _ in 0..count {
                    let m = messages.next().await.expect("a record").expect("record");
                    out.push(decode(&m.payload));
                }
            }
            out
        })
    }

    /// `(key, body)` of a Gust record as stored (see the nats stream
    /// module: version, time, key, metadata, body).
    fn decode(b: &[u8]) -> (String, String) {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        let mut at = 9;
        let key_len = u32_at(at);
        let key = String::from_utf8(b[at + 4..at + 4 + key_len].to_vec()).unwrap();
        at += 4 + key_len;
        let pairs = u32_at(at);
        at += 4;
        for _ in 0..pairs * 2 {
            at += 4 + u32_at(at);
        }
        (key, String::from_utf8(b[at..].to_vec()).unwrap())
    }

    /// Deletes every JetStream stream (streams, checkpoints, kv buckets) of
    /// app `name`.
    pub fn delete_app(name: &str) {
        block_on(async {
            let Ok(client) = async_nats::connect(NATS).await else {
                eprintln!("cleanup: cannot connect to NATS");
                return;
            };
            let js = jetstream::new(client.clone());
            let prefix = stream_prefix(client, name);
            let names: Vec<String> = js
                .stream_names()
                .filter_map(|n| async move { n.ok() })
                .collect()
                .await;
            for n in names {
                if (n.starts_with(&prefix) || n.contains(name))
                    && let Err(e) = js.delete_stream(&n).await
                {
                    eprintln!("cleanup: cannot delete NATS stream {n}: {e}");
                }
            }
        })
    }
}

/// PostgreSQL, read with `psql`.
mod pg {
    use super::*;

    /// The output of `sql` run by `psql` (unaligned, tuples only), trimmed.
    pub fn query(sql: &str) -> String {
        let out = std::process::Command::new("psql")
            .args([POSTGRES, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Every `(key, count)` in kv store `store` of app `name`.
    pub fn kv_counts(name: &str, store: &str) -> Vec<(String, u64)> {
        let schema = gust_backends::postgres::schema_name(name);
        query(&format!(
            "SELECT key || '|' || convert_from(value, 'UTF8') FROM {schema}.gust_kv \
             WHERE bucket = '{store}'"
        ))
        .lines()
        .map(|line| {
            let (key, n) = line.rsplit_once('|').expect("key|count");
            (key.to_string(), n.trim().parse().expect("a count"))
        })
        .collect()
    }

    /// Drops app `name`'s schema.
    pub fn delete_app(name: &str) {
        let schema = gust_backends::postgres::schema_name(name);
        let out = std::process::Command::new("psql")
            .args([
                POSTGRES,
                "-Atc",
                &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("cleanup: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("cleanup: cannot run psql: {e}"),
        }
    }
}
