//! Clusters end to end: three `gust serve --config node.toml` nodes with a
//! `[cluster]` on the shared NATS and PostgreSQL (a cluster name unique to
//! the run, so runs and clusters stay apart), driven like a user would:
//! `gust deploy`, `gust apps ls`, `gust cluster status` and HTTP.
//!
//! - deploy once, all three answer; a new version reaches all three while a
//!   slow request on the old one finishes; a node stopped during the upgrade
//!   comes back with its stale version and converges; rollback;
//! - SIGKILL one node while 10,000 queue messages and 10,000 stream records
//!   are in flight: none lost, duplicates counted, the dead node's stream
//!   partitions taken over (time printed);
//! - a 1 s timer over 60 s on three nodes fires every slot exactly once.
//!
//! `--nocapture` shows the figures.

mod common;
mod engine_probe;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use engine_probe::{NATS, NatsCleanup, OwnNats, POSTGRES, PgCleanup, psql, unique_app};

/// A cluster of nodes started by the test.
struct Cluster {
    name: String,
    dir: tempfile::TempDir,
    key: String,
    nats: String,
    postgres: String,
    nodes: Vec<Option<Running>>,
}

impl Cluster {
    /// `n` nodes of a new cluster, started together.
    fn start(label: &str, n: usize) -> Self {
        Self::start_on(label, n, NATS, POSTGRES)
    }

    /// `n` nodes of a new cluster on the given engines.
    fn start_on(label: &str, n: usize, nats: &str, postgres: &str) -> Self {
        let name = unique_app(label);
        let dir = tempfile::tempdir().unwrap();
        let key = format!("test-admin-key-{name}");
        std::fs::write(dir.path().join("admin.key"), format!("{key}\n")).unwrap();
        let mut cluster = Self {
            name,
            dir,
            key,
            nats: nats.to_string(),
            postgres: postgres.to_string(),
            nodes: Vec::new(),
        };
        let starting: Vec<_> = (0..n)
            .map(|i| {
                let cmd = cluster.command(i);
                std::thread::spawn(move || start_ready(cmd))
            })
            .collect();
        cluster.nodes = starting
            .into_iter()
            .map(|t| Some(t.join().unwrap()))
            .collect();
        cluster
    }

    /// `gust serve --config <node i's node.toml>`, writing the file first.
    fn command(&self, i: usize) -> std::process::Command {
        let node_dir = self.dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let config = node_dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n[cluster]\nname = \"{}\"\nnats = \"{}\"\npostgres = \"{}\"\nadmin_key_file = \"../admin.key\"\n",
                self.name, self.nats, self.postgres
            ),
        )
        .unwrap();
        let mut cmd = gust_command();
        cmd.arg("serve").arg("--config").arg(config);
        cmd
    }

    fn url(&self, i: usize) -> String {
        self.nodes[i].as_ref().expect("node running").url.clone()
    }

    /// Runs `gust <args> --url <node 0> --key <key>`; (code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let url = self.url(0);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &url, "--key", &self.key]);
        gust(&all, self.dir.path())
    }

    fn deploy(&self, app: &Path) -> String {
        let (code, out, err) = self.cli(&["deploy", app.to_str().unwrap()]);
        assert_eq!(code, 0, "deploy failed:\n{out}\n{err}");
        out
    }

    /// `GET /_gust/cluster/status` on node `via`.
    fn status(&self, via: usize) -> serde_json::Value {
        let r = get(
            &format!("{}/_gust/cluster/status", self.url(via)),
            &[("x-gust-key", &self.key)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Stops every node (SIGTERM); each must exit cleanly.
    fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut n) = node.take() {
                assert_eq!(n.stop(), Some(0), "{}", n.stderr());
            }
        }
    }

    /// The engine namespace of app `app` in this cluster.
    fn namespace(&self, app: &str) -> String {
        format!("{}_{app}", self.name)
    }

    /// Removes what the cluster left in the engines.
    fn forget(&self, apps: &[&str]) {
        psql(&format!(
            "DELETE FROM gust_cluster_artifacts WHERE cluster = '{0}'; \
             DELETE FROM gust_cluster_releases WHERE cluster = '{0}'; \
             DELETE FROM gust_cluster_keys WHERE cluster = '{0}'; \
             DELETE FROM gust_cluster_nodes WHERE cluster = '{0}'",
            self.name
        ));
        for app in apps {
            drop(PgCleanup::new(&self.namespace(app)));
        }
        drop(NatsCleanup::new(&self.name));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.stop();
        }
    }
}

/// An app folder with the test guests as its components.
fn shop(manifest: &str) -> TestApp {
    let app = TestApp::new(manifest);
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app.add_component("data.wasm", &guest("data-probe"));
    app
}

fn web_manifest(release: &str) -> String {
    format!(
        r#"
[app]
name = "shop"
[variables]
release = {{ default = "{release}" }}
[[function]]
name = "web"
source = "misbehave.wasm"
trigger = {{ http = {{ route = "/t/{{action}}", auth = "anonymous" }} }}
bindings = {{ store = {{ kv = "hits" }} }}
"#
    )
}

/// What `GET /t/var?name=release` answers on node `i` (via the app prefix).
fn release_on(cluster: &Cluster, i: usize) -> String {
    get(&format!("{}/shop/t/var?name=release", cluster.url(i)), &[]).body
}

#[test]
fn deploy_upgrade_stale_node_and_rollback_on_three_nodes() {
    let mut cluster = Cluster::start("clu-deploy", 3);
    let v1 = shop(&web_manifest("one"));
    let out = cluster.deploy(v1.path());
    assert!(out.contains("deployed shop v1"), "{out}");
    let deployed = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || (0..3)
            .all(|i| release_on(&cluster, i) == "one")),
        "not every node serves v1 within 10 s: {:?}",
        (0..3).map(|i| release_on(&cluster, i)).collect::<Vec<_>>()
    );
    println!(
        "cluster: v1 served by all 3 nodes {} ms after `gust deploy` returned",
        deployed.elapsed().as_millis()
    );
    // At the root too (the only app), and with a function route.
    let r = get(&format!("{}/t/var?name=release", cluster.url(1)), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "one"));
    // The same deploy again is no new version.
    assert!(cluster.deploy(v1.path()).contains("v1 (unchanged"));

    // Node 2 goes away; v2 is deployed while a slow request runs on v1.
    let mut stale = cluster.nodes[2].take().unwrap();
    assert_eq!(stale.stop(), Some(0), "{}", stale.stderr());
    let slow_url = format!("{}/shop/t/slow?ms=2500", cluster.url(1));
    let slow = std::thread::spawn(move || get(&slow_url, &[]));
    std::thread::sleep(Duration::from_millis(300));
    let v2 = shop(&web_manifest("two"));
    assert!(cluster.deploy(v2.path()).contains("deployed shop v2"));
    let upgraded = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || (0..2)
            .all(|i| release_on(&cluster, i) == "two")),
        "v2 did not reach the live nodes within 10 s"
    );
    println!(
        "cluster: v2 served by both live nodes {} ms after deploy",
        upgraded.elapsed().as_millis()
    );
    let r = slow.join().unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "done"),
        "the in-flight request on v1 was dropped"
    );

    // The stale node restarts with v1 unpacked on disk and converges.
    cluster.nodes[2] = Some(start_ready(cluster.command(2)));
    assert!(
        eventually(Duration::from_secs(10), || release_on(&cluster, 2) == "two"),
        "the restarted node still serves {}",
        release_on(&cluster, 2)
    );
    let (code, out, err) = cluster.cli(&["apps", "ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shop") && out.contains("v2"), "{out}");
    assert!(
        eventually(Duration::from_secs(5), || {
            let (_, out, _) = cluster.cli(&["apps", "ls"]);
            out.matches("=v2").count() == 3
        }),
        "apps ls does not show v2 on three nodes:\n{}",
        cluster.cli(&["apps", "ls"]).1
    );
    let (code, out, err) = cluster.cli(&["cluster", "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 live node(s)"), "{out}");

    // Rollback returns every node to v1.
    let (code, out, err) = cluster.cli(&["deploy", "--rollback", "shop"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rolled back shop to v1"), "{out}");
    assert!(
        eventually(Duration::from_secs(10), || (0..3)
            .all(|i| release_on(&cluster, i) == "one")),
        "rollback did not reach every node"
    );
    // Wrong keys and bad artifacts are refused.
    let r = get(
        &format!("{}/_gust/cluster/status", cluster.url(0)),
        &[("x-gust-key", "nope")],
    );
    assert_eq!(r.status, 403);
    let r = send(
        "POST",
        &format!("{}/_gust/cluster/apps/shop", cluster.url(0)),
        &[("x-gust-key", &cluster.key)],
        b"not an archive",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let health = get(&format!("{}/_gust/health", cluster.url(0)), &[]);
    assert_eq!(health.status, 200);
    cluster.forget(&["shop"]);
}

/// Items of each kind written.
const ITEMS: usize = 10_000;

fn load_manifest() -> String {
    r#"
[app]
name = "shop"
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs", concurrency = 16 } }
bindings = { seen = { kv = "seen" } }
[[function]]
name = "reader"
source = "probe.wasm"
trigger = { stream = { stream = "events", start = "earliest", batch_size = 50 } }
bindings = { seen = { kv = "seen" } }
"#
    .to_string()
}

/// How many keys kv store `store` of `namespace` holds on NATS.
fn nats_kv_len(namespace: &str, store: &str) -> u64 {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(NATS).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let bucket =
            gust_backends::nats::kv::NatsKv::with_context(js.clone(), namespace).bucket_name(store);
        match js.get_key_value(&bucket).await {
            Ok(kv) => kv.status().await.map(|s| s.values()).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// The stream claims (`stream:events:reader:<p>`) each live node owns.
fn stream_owners(status: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let owns = n["owns"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str())
                .filter(|o| o.starts_with("stream:"))
                .map(str::to_string)
                .collect();
            (n["id"].as_str().unwrap().to_string(), owns)
        })
        .collect()
}

#[test]
fn sigkill_a_node_mid_load_loses_nothing_and_its_partitions_move() {
    let mut cluster = Cluster::start("clu-kill", 3);
    let app = shop(&load_manifest());
    assert!(cluster.deploy(app.path()).contains("deployed shop v1"));
    let ns = cluster.namespace("shop");
    // Wait until the four partitions are spread over the three nodes.
    assert!(
        eventually(Duration::from_secs(20), || {
            let owners = stream_owners(&cluster.status(0));
            owners.len() == 3
                && owners.values().map(Vec::len).sum::<usize>() == 4
                && owners.values().all(|o| !o.is_empty() && o.len() <= 2)
        }),
        "partitions not spread: {:?}",
        stream_owners(&cluster.status(0))
    );
    // The victim owns partitions and never takes the writes.
    let owners = stream_owners(&cluster.status(0));
    let victim = (1..3)
        .find(|&i| {
            let id = cluster.status(i)["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["this_node"] == true)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            !owners[&id].is_empty()
        })
        .expect("node 1 or 2 owns a partition");
    let victim_id = cluster.status(victim)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["this_node"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let base = format!("{}/shop", cluster.url(0));
    let key = cluster.key.clone();
    let writing = std::thread::spawn(move || {
        let started = Instant::now();
        let (b, k) = (base.clone(), key.clone());
        in_parallel(ITEMS, 4, move |i| {
            let r = send(
                "POST",
                &format!("{b}/_gust/queues/jobs/messages"),
                &[("x-gust-key", &k), ("content-type", "text/plain")],
                format!("q{i:05}").as_bytes(),
            );
            assert_eq!(r.status, 202, "send {i}: {}", r.body);
        });
        let (b, k) = (base, key);
        in_parallel(ITEMS, 4, move |i| {
            let r = send(
                "POST",
                &format!("{b}/_gust/streams/events/records?key=k{}", i % 64),
                &[("x-gust-key", &k), ("content-type", "text/plain")],
                format!("s{i:05}").as_bytes(),
            );
            assert_eq!(r.status, 201, "append {i}: {}", r.body);
        });
        started.elapsed()
    });
    assert!(
        eventually(Duration::from_secs(120), || nats_kv_len(&ns, "seen")
            >= 2_000),
        "fewer than 2,000 handled"
    );
    let killed_at = Instant::now();
    let mut dead = cluster.nodes[victim].take().unwrap();
    let pid = dead.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(eventually(Duration::from_secs(10), || !dead.alive()));
    let handled_at_kill = nats_kv_len(&ns, "seen");

    // Its partitions move to the two others.
    let moved = eventually(Duration::from_secs(30), || {
        let owners = stream_owners(&cluster.status(0));
        !owners.contains_key(&victim_id) && owners.values().map(Vec::len).sum::<usize>() == 4
    });
    let takeover = killed_at.elapsed();
    assert!(
        moved,
        "partitions not taken over: {:?}",
        stream_owners(&cluster.status(0))
    );

    let write_time = writing.join().unwrap();
    assert!(
        eventually(Duration::from_secs(180), || nats_kv_len(&ns, "seen")
            >= 2 * ITEMS as u64),
        "only {} of {} handled",
        nats_kv_len(&ns, "seen"),
        2 * ITEMS
    );
    cluster.stop_all();
    let counts = nats_kv_counts(NATS, &ns, "seen");
    let expected = (0..ITEMS).flat_map(|i| [format!("q{i:05}"), format!("s{i:05}")]);
    let Tally {
        lost,
        duplicates,
        distinct,
    } = tally_counts(&counts, expected);
    println!(
        "cluster kill: {ITEMS} queue messages + {ITEMS} stream records written in {:.1}s through node 0; \
         node {victim} SIGKILLed with {handled_at_kill} handled; its partitions taken over in {:.1}s \
         (claim ttl 8 s, heartbeat timeout 6 s); lost {}; duplicates {duplicates}",
        write_time.as_secs_f64(),
        takeover.as_secs_f64(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(distinct, 2 * ITEMS);
    cluster.forget(&["shop"]);
}

/// Gust's NATS kv key escaping reversed (`_xx` is byte `xx`).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' && i + 3 <= bytes.len() {
            out.push(u8::from_str_radix(&key[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_one_second_timer_fires_each_slot_once_on_three_nodes() {
    let cluster = Cluster::start("clu-timer", 3);
    let app = shop(
        r#"
[app]
name = "shop"
[[function]]
name = "tick"
source = "probe.wasm"
trigger = { timer = { schedule = "* * * * * *" } }
bindings = { seen = { kv = "ticks" } }
"#,
    );
    assert!(cluster.deploy(app.path()).contains("deployed shop v1"));
    std::thread::sleep(Duration::from_secs(62));
    let mut cluster = cluster;
    cluster.stop_all();
    let counts = nats_kv_counts(NATS, &cluster.namespace("shop"), "ticks");
    let mut slots = BTreeMap::new();
    for (key, n) in &counts {
        let data: serde_json::Value = serde_json::from_str(&unescape(key)).unwrap();
        let at = data["scheduled_time"].as_str().unwrap().to_string();
        *slots.entry(at).or_insert(0) += n;
    }
    let twice: Vec<_> = slots.iter().filter(|(_, n)| **n > 1).collect();
    let seconds: BTreeSet<i64> = slots.keys().map(|t| chrono_seconds(t)).collect();
    let (first, last) = (*seconds.first().unwrap(), *seconds.last().unwrap());
    let missing: Vec<i64> = (first..=last).filter(|s| !seconds.contains(s)).collect();
    println!(
        "cluster timer: {} slots fired over {}s on 3 nodes; fired twice: {}; missing: {}",
        slots.len(),
        last - first + 1,
        twice.len(),
        missing.len()
    );
    assert!(
        slots.len() >= 55,
        "only {} slots fired in 62 s",
        slots.len()
    );
    assert!(twice.is_empty(), "slots fired more than once: {twice:?}");
    assert!(missing.is_empty(), "slots never fired: {missing:?}");
    cluster.forget(&["shop"]);
}

/// Seconds since the epoch of an RFC 3339 time (UTC, `...Z` or `+00:00`).
fn chrono_seconds(t: &str) -> i64 {
    // 2026-12-03T11:22:33+00:00: days from the civil date, plus the time.
    let (date, time) = t.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let hms: Vec<i64> = time[..8].split(':').map(|x| x.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

#[test]
fn nodes_ride_out_a_nats_restart_and_killed_postgres_connections() {
    let mut nats = OwnNats::start();
    // A name PostgreSQL shows for the nodes' connections, so the test
    // terminates only those.
    let tag = unique_app("faults").replace('-', "_");
    let postgres = format!("{POSTGRES}?application_name={tag}");
    let mut cluster = Cluster::start_on("clu-faults", 2, &nats.url(), &postgres);
    let app = shop(
        r#"
[app]
name = "shop"
[[function]]
name = "web"
source = "misbehave.wasm"
trigger = { http = { route = "/t/{action}", auth = "anonymous" } }
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs", concurrency = 8 } }
bindings = { seen = { kv = "seen" } }
"#,
    );
    assert!(cluster.deploy(app.path()).contains("deployed shop v1"));
    assert!(eventually(Duration::from_secs(10), || {
        (0..2).all(|i| get(&format!("{}/shop/t/ok", cluster.url(i)), &[]).status == 200)
    }));

    // Messages are sent one by one through node 0; only those answered 202
    // were acknowledged, and each of them must be handled.
    const SENDS: usize = 1_500;
    let (base, key) = (format!("{}/shop", cluster.url(0)), cluster.key.clone());
    let sender = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..SENDS {
            let r = send(
                "POST",
                &format!("{base}/_gust/queues/jobs/messages"),
                &[("x-gust-key", &key), ("content-type", "text/plain")],
                format!("f{i:05}").as_bytes(),
            );
            if r.status == 202 {
                acked.push(format!("f{i:05}"));
            }
            std::thread::sleep(Duration::from_millis(4));
        }
        acked
    });
    std::thread::sleep(Duration::from_secs(2));
    // NATS goes away for 3 s: HTTP that does not need it keeps working.
    nats.stop();
    let outage = Instant::now();
    let mut served = 0;
    while outage.elapsed() < Duration::from_secs(3) {
        for i in 0..2 {
            let r = get(&format!("{}/shop/t/ok", cluster.url(i)), &[]);
            assert_eq!(
                r.status, 200,
                "node {i} stopped serving HTTP without NATS: {}",
                r.body
            );
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    nats.restart();
    // Then every PostgreSQL connection of the nodes is terminated.
    std::thread::sleep(Duration::from_secs(2));
    let killed = psql(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{tag}'"
    ))
    .trim()
    .to_string();
    let acked = sender.join().unwrap();
    // The nodes still serve, deploy still works (store reconnected).
    for i in 0..2 {
        let r = get(&format!("{}/shop/t/ok", cluster.url(i)), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert!(
        eventually(Duration::from_secs(20), || cluster.status(1)["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2)),
        "heartbeats did not recover: {}",
        cluster.status(1)
    );
    let ns = cluster.namespace("shop");
    let nats_url = nats.url();
    let all_seen = eventually(Duration::from_secs(90), || {
        let counts = nats_kv_counts(&nats_url, &ns, "seen");
        let seen: BTreeSet<&str> = counts.iter().map(|(k, _)| k.as_str()).collect();
        acked.iter().all(|a| seen.contains(a.as_str()))
    });
    let counts = nats_kv_counts(&nats_url, &ns, "seen");
    let Tally {
        lost, duplicates, ..
    } = tally_counts(&counts, acked.iter().cloned());
    cluster.stop_all();
    println!(
        "cluster faults: {} of {SENDS} sends acknowledged across a 3 s NATS outage; {served} HTTP requests \
         served during it; {killed} PostgreSQL connections terminated; lost {}; duplicates {duplicates}",
        acked.len(),
        lost.len()
    );
    assert!(
        all_seen && lost.is_empty(),
        "{} acknowledged messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        acked.len() > SENDS / 2,
        "too few sends acknowledged: {}",
        acked.len()
    );
    cluster.forget(&["shop"]);
}
