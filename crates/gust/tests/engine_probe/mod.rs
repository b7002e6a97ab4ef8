//! Engine-side checks for the example tests run on real engines: unique app
//! names, reading PostgreSQL with `psql` and NATS JetStream with async-nats
//! (never through Gust), and cleaning up what a run created.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const NATS: &str = "nats://127.0.0.1:4222";

/// A unique app name for one run: `<example>-<pid>-<random>` (letters,
/// digits and `-` only, lower case).
pub fn unique_app(example: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let random = (nanos as u64 ^ u64::from(std::process::id()).rotate_left(32))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        >> 24;
    format!("{example}-{}-{random:x}", std::process::id())
}

/// `manifest` with its `[app] name` replaced by `name`.
pub fn rename_app(manifest: &str, name: &str) -> String {
    let app = manifest.find("[app]").expect("an [app] table");
    let at = app + manifest[app..].find("\nname = ").expect("[app] name") + 1;
    let end = at + manifest[at..].find('\n').unwrap_or(manifest.len() - at);
    format!("{}name = \"{name}\"{}", &manifest[..at], &manifest[end..])
}

// ---------------------------------------------------------------------------
// PostgreSQL, through psql

/// The PostgreSQL schema of an app's tables and kv (`gust_<app>`, every
/// character but ASCII letters and digits as `_`).
pub fn pg_schema(app: &str) -> String {
    let mut out = String::from("gust_");
    out.extend(app.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    out
}

/// Runs `sql` with `psql -At` and returns its output, one row a line.
pub fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test"])
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-At", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rows `psql` prints for `sql`, each split at `|`.
pub fn psql_rows(sql: &str) -> Vec<Vec<String>> {
    psql(sql)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// Drops every schema of the app (`gust_<app>` and `gust_<app>_<resource>`)
/// when dropped, also when the test failed.
pub struct PgCleanup {
    pub schema: String,
}

impl PgCleanup {
    pub fn new(app: &str) -> Self {
        Self {
            schema: pg_schema(app),
        }
    }

    /// The app's schemas that exist now.
    pub fn schemas(&self) -> Vec<String> {
        let s = &self.schema;
        psql(&format!(
            "SELECT nspname FROM pg_namespace WHERE nspname = '{s}' \
             OR nspname LIKE '{}\\_%' ORDER BY nspname",
            s.replace('_', "\\_")
        ))
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for PgCleanup {
    fn drop(&mut self) {
        for schema in self.schemas() {
            psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
        assert!(self.schemas().is_empty(), "schemas left behind");
    }
}

// ---------------------------------------------------------------------------
// NATS JetStream, through async-nats

/// Gust's escaping of names on NATS: ASCII letters, digits and `-` stay,
/// every other byte becomes `_` and two hex digits.
fn nats_escape(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The prefix of app `app`'s JetStream streams: `GUST_<APP>` with `-` as
/// `_` (app names are lower-case letters, digits and `-`).
fn nats_prefix(app: &str) -> String {
    format!("GUST_{}", app.replace('-', "_").to_uppercase())
}

/// The JetStream stream of partition `partition` of Gust stream `stream` of
/// app `app`: `GUST_<APP>_S_<stream>_P<partition>`, the stream's name
/// escaped.
pub fn nats_partition_stream(app: &str, stream: &str, partition: u32) -> String {
    format!(
        "{}_S_{}_P{partition}",
        nats_prefix(app),
        nats_escape(stream)
    )
}

/// The JetStream stream of app `app`'s queue `queue` (`GUST_<APP>_Q_<queue>`).
pub fn nats_queue_stream(app: &str, queue: &str) -> String {
    format!("{}_Q_{}", nats_prefix(app), nats_escape(queue))
}

/// The JetStream stream of app `app`'s topic `topic` (`GUST_<APP>_T_<topic>`).
pub fn nats_topic_stream(app: &str, topic: &str) -> String {
    format!("{}_T_{}", nats_prefix(app), nats_escape(topic))
}

/// A record as Gust stores it in a JetStream message.
#[derive(Debug, Clone)]
pub struct NatsRecord {
    pub seq: u64,
    pub subject: String,
    pub appended_ms: u64,
    pub key: String,
    pub metadata: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Decodes Gust's record encoding: version 1, append time (ms, LE), key,
/// metadata pairs, body (lengths as LE u32).
fn decode(seq: u64, subject: String, payload: &[u8]) -> NatsRecord {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.take(4).try_into().unwrap())
        }
        fn text(&mut self) -> String {
            let n = self.u32() as usize;
            String::from_utf8(self.take(n).to_vec()).unwrap()
        }
    }
    let mut r = Reader(payload);
    assert_eq!(r.take(1), [1], "record version at seq {seq}");
    let appended_ms = u64::from_le_bytes(r.take(8).try_into().unwrap());
    let key = r.text();
    let mut metadata = BTreeMap::new();
    for _ in 0..r.u32() {
        let k = r.text();
        metadata.insert(k, r.text());
    }
    NatsRecord {
        seq,
        subject,
        appended_ms,
        key,
        metadata,
        body: r.0.to_vec(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The names of the JetStream streams on the server.
pub fn nats_streams() -> Vec<String> {
    use futures::TryStreamExt;
    runtime().block_on(async {
        let client = async_nats::connect(NATS).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        js.stream_names().try_collect().await.expect("stream names")
    })
}

/// The payloads of every message in JetStream stream `name`.
pub fn nats_payloads(name: &str) -> Vec<Vec<u8>> {
    runtime().block_on(async {
        let client = async_nats::connect(NATS).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(name)
            .await
            .unwrap_or_else(|e| panic!("get stream {name}: {e}"));
        let state = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        if state.messages > 0 {
            for seq in state.first_sequence..=state.last_sequence {
                if let Ok(m) = stream.get_raw_message(seq).await {
                    out.push(m.payload.to_vec());
                }
            }
        }
        out
    })
}

/// Every message of JetStream stream `name`, decoded as Gust records; `None`
/// when there is no such stream.
pub fn nats_records(name: &str) -> Option<Vec<NatsRecord>> {
    runtime().block_on(async {
        let client = async_nats::connect(NATS).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let mut stream = match js.get_stream(name).await {
            Ok(s) => s,
            Err(e) if e.to_string().contains("not found") => return None,
            Err(e) => panic!("get stream {name}: {e}"),
        };
        let state = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            let m = stream
                .get_raw_message(seq)
                .await
                .unwrap_or_else(|e| panic!("{name} seq {seq}: {e}"));
            out.push(decode(seq, m.subject.to_string(), &m.payload));
        }
        assert_eq!(out.len() as u64, state.messages, "{name}: messages");
        Some(out)
    })
}

/// Deletes every JetStream stream (queues, topics, streams, kv buckets,
/// object stores) whose name contains the run's random token, when dropped.
pub struct NatsCleanup {
    token: String,
}

impl NatsCleanup {
    /// For app `app` as made by [`unique_app`] (its last `-` part is the
    /// random token, which every engine name of the app contains).
    pub fn new(app: &str) -> Self {
        let token = app.rsplit('-').next().unwrap().to_ascii_lowercase();
        assert!(token.len() >= 6, "{app}: not from unique_app");
        Self { token }
    }

    /// The app's JetStream streams now.
    pub fn streams(&self) -> Vec<String> {
        nats_streams()
            .into_iter()
            .filter(|n| n.to_ascii_lowercase().contains(&self.token))
            .collect()
    }
}

impl Drop for NatsCleanup {
    fn drop(&mut self) {
        let names = self.streams();
        runtime().block_on(async {
            let client = async_nats::connect(NATS).await.expect("connect to NATS");
            let js = async_nats::jetstream::new(client);
            for name in &names {
                js.delete_stream(name)
                    .await
                    .unwrap_or_else(|e| panic!("delete stream {name}: {e}"));
            }
        });
        eprintln!("deleted {} JetStream streams", names.len());
        assert!(self.streams().is_empty(), "streams left behind");
    }
}

// ---------------------------------------------------------------------------
// A NATS server of the test's own (to stop and restart)

/// A `nats-server -js` of the test's own, on a free port with its own store.
pub struct OwnNats {
    port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnNats {
    /// Starts one on a free port with a fresh store folder.
    pub fn start() -> Self {
        let mut nats = Self {
            port: crate::common::free_port(),
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.restart();
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether it accepts connections.
    pub fn up(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// (Re)starts the server on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        let child = std::process::Command::new("/usr/sbin/nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        assert!(
            crate::common::eventually(Duration::from_secs(10), || self.up()),
            "own nats-server not listening"
        );
    }

    /// Kills it (SIGKILL); its store stays for [`OwnNats::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}
