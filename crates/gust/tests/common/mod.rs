//! Shared end-to-end test support: build guest components, start the real
//! `gust` binary on a free port, talk HTTP to it like a user.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Shared cargo target folder for guest builds.
pub fn guest_target() -> PathBuf {
    repo().join("target/guests")
}

/// Builds `tests/guests/<name>` (once per test binary) and returns its .wasm.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let wasm = guest_target()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !built.iter().any(|n| n == name) {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo().join("tests/guests").join(name).join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", guest_target())
            .status()
            .expect("run cargo");
        assert!(status.success(), "building guest {name} failed");
        built.push(name.to_string());
    }
    assert!(wasm.is_file(), "{} missing", wasm.display());
    wasm
}

/// A temporary app folder with a `gust.toml`.
pub struct TestApp {
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// Writes `manifest` as the app's gust.toml.
    pub fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gust.toml"), manifest).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies a component into the app folder under `file`.
    pub fn add_component(&self, file: &str, wasm: &Path) {
        std::fs::copy(wasm, self.path().join(file)).unwrap();
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path().join(file), text).unwrap();
    }
}

/// `gust` with a test-local compile cache and the shared guest target.
pub fn gust_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gust"));
    cmd.env("CARGO_TARGET_DIR", guest_target())
        .env("GUST_CACHE_DIR", repo().join("target/gust-cache"))
        .env_remove("GUST_URL")
        .env_remove("GUST_KEY")
        .env_remove("GUST_LISTEN");
    cmd
}

/// Runs a `gust` subcommand to completion: (exit code, stdout, stderr).
pub fn gust(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = gust_command().args(args).current_dir(cwd).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `gust up`.
pub struct Running {
    child: Child,
    pub url: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

/// Starts `gust up <dir> --listen 127.0.0.1:0` plus `extra` args and waits
/// for its `ready` line.
pub fn up(dir: &Path, extra: &[&str]) -> Running {
    up_with_env(dir, extra, &[])
}

/// As [`up`], with extra environment variables.
pub fn up_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = gust_command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    up_command(cmd, dir, extra)
}

/// As [`up`], running `cmd` (a `gust` binary with its environment) instead
/// of the one cargo built.
pub fn up_command(mut cmd: Command, dir: &Path, extra: &[&str]) -> Running {
    cmd.arg("up")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    start_ready(cmd)
}

/// Spawns `cmd` (a `gust` that prints a line with `ready` and `on <url>`)
/// and waits for that line.
pub fn start_ready(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gust");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    {
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    let _ = ready_tx.send(line.clone());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let text = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let line = match ready_rx.recv_timeout(Duration::from_secs(600)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "gust never became ready; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
    };
    let url = line
        .split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .expect("url in ready line")
        .to_string();
    Running {
        child,
        url,
        stdout,
        stderr,
    }
}

impl Running {
    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }

    /// Everything printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response: status, headers of interest, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET url` with optional headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.call().unwrap_or_else(|e| panic!("GET {url}: {e}")))
}

/// `<method> url` with a body.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(body.to_vec()).unwrap();
    reply(
        agent()
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}")),
    )
}

/// `POST url` with a chunked body (no content-length).
pub fn post_chunked(url: &str, body: Vec<u8>) -> Reply {
    let mut reader = std::io::Cursor::new(body);
    let r = agent()
        .post(url)
        .send(ureq::SendBody::from_reader(&mut reader))
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    reply(r)
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The keys of an app, via `gust keys --json`.
pub fn keys(dir: &Path) -> serde_json::Value {
    let (code, out, err) = gust(&["keys", "--json", dir.to_str().unwrap()], dir);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The last 1,000 log lines of `function` in the app at `dir`, via `gust logs`.
pub fn function_logs(dir: &Path, function: &str) -> String {
    let (code, out, err) = gust(
        &[
            "logs",
            function,
            "--tail",
            "1000",
            "--app",
            dir.to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(code, 0, "gust logs {function}: {err}");
    out
}

/// What `function` logged as `handled <body>` so far, read from
/// `.gust/logs/functions.log` (appended by every host run on the folder):
/// the number of such lines, and the distinct bodies among them.
pub fn logged_bodies(dir: &Path, function: &str) -> (usize, std::collections::HashSet<String>) {
    let text = std::fs::read_to_string(dir.join(".gust/logs/functions.log")).unwrap_or_default();
    let marker = format!("[{function}] handled ");
    let mut lines = 0;
    let mut bodies = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.split_once(marker.as_str()).map(|(_, r)| r) {
            lines += 1;
            if let Some(body) = rest.split_whitespace().next() {
                bodies.insert(body.to_string());
            }
        }
    }
    (lines, bodies)
}

/// Every `(key, count)` in embedded kv store `store` of the app at `dir`,
/// read from `.gust/data/kv.redb` (only while no host runs on it).
pub fn kv_counts(dir: &Path, store: &str) -> Vec<(String, u64)> {
    use gust_backends::KeyValueProvider;
    let path = dir.join(".gust/data/kv.redb");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let kv = gust_backends::embedded::EmbeddedKv::open(&path).expect("open kv.redb");
        let store = kv.open(store).unwrap();
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list_keys(cursor, 1000).await.unwrap();
            keys.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (key, value) in store.get_many(keys).await.unwrap().into_iter().flatten() {
            let n = std::str::from_utf8(&value).unwrap().trim().parse().unwrap();
            out.push((key, n));
        }
        out
    })
}

/// The admin key of the app at `dir`, from `.gust/keys.json`.
pub fn admin_key(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(".gust/keys.json")).expect("keys.json");
    let keys: serde_json::Value = serde_json::from_str(&text).unwrap();
    keys["admin"].as_str().expect("admin key").to_string()
}

/// Runs `send(i)` for every `i` in `0..count` from `threads` threads.
pub fn in_parallel(count: usize, threads: usize, send: impl Fn(usize) + Send + Sync + 'static) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let send = Arc::new(send);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    send(i);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("sender thread");
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The accept-queue depth of the listener on 127.0.0.1:`port` (the
/// `Send-Q` that `ss -ltn` shows for it), if `ss` can tell.
pub fn listen_backlog(port: &str) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next()?.split_whitespace().nth(2)?.parse().ok()
}

/// How a SIGKILL durability run ended, from the kv store in which the
/// consumer counts each body it handled.
pub struct Tally {
    /// Expected bodies never handled.
    pub lost: Vec<String>,
    /// Handlings beyond the first, summed over all bodies.
    pub duplicates: u64,
    /// Distinct bodies handled.
    pub distinct: usize,
}

/// Tallies kv store `store` of the app in `dir` against the `expected` bodies.
pub fn tally(dir: &Path, store: &str, expected: impl Iterator<Item = String>) -> Tally {
    tally_counts(&kv_counts(dir, store), expected)
}

/// Tallies `(body, times handled)` pairs, read from wherever the kv store
/// lives (an engine's, for a host started with engine flags), against the
/// `expected` bodies.
pub fn tally_counts(counts: &[(String, u64)], expected: impl Iterator<Item = String>) -> Tally {
    let seen: std::collections::HashSet<&str> = counts.iter().map(|(k, _)| k.as_str()).collect();
    Tally {
        lost: expected.filter(|b| !seen.contains(b.as_str())).collect(),
        duplicates: counts.iter().map(|(_, n)| n.saturating_sub(1)).sum(),
        distinct: counts.len(),
    }
}

/// Every `(key, count)` in kv store `store` of app `app` on the NATS server
/// at `url` (a host started with `--nats` keeps kv there), read with
/// async-nats from the store's bucket. Keys come as stored: escaped, which
/// leaves letters, digits and `-` as they are.
pub fn nats_kv_counts(url: &str, app: &str, store: &str) -> Vec<(String, u64)> {
    use futures::StreamExt;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let bucket =
            gust_backends::nats::kv::NatsKv::with_context(js.clone(), app).bucket_name(store);
        let kv = js
            .get_key_value(&bucket)
            .await
            .unwrap_or_else(|e| panic!("kv bucket {bucket}: {e}"));
        let keys: Vec<String> = kv
            .keys()
            .await
            .expect("list keys")
            .map(|k| k.expect("key"))
            .collect()
            .await;
        futures::stream::iter(keys)
            .map(|key| {
                let kv = kv.clone();
                async move {
                    let value = kv.get(&key).await.expect("get").expect("value");
                    let n = std::str::from_utf8(&value).unwrap().trim().parse().unwrap();
                    (key, n)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await
    })
}

/// Deletes every stream, kv bucket and object store that app `namespace`
/// has on the NATS server at `url` (`gust_backends::nats::delete_app`) when
/// dropped, also when the test failed; never panics.
pub struct NatsApp {
    url: String,
    namespace: String,
}

impl NatsApp {
    /// For the app named `namespace` run with `gust up --nats <url>`.
    pub fn new(url: &str, namespace: &str) -> Self {
        Self {
            url: url.to_string(),
            namespace: namespace.to_string(),
        }
    }
}

impl Drop for NatsApp {
    fn drop(&mut self) {
        let deleted = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(gust_backends::nats::delete_app(&self.url, &self.namespace));
        match deleted {
            Ok(names) => eprintln!("deleted {} NATS streams of {}", names.len(), self.namespace),
            Err(e) => eprintln!("could not delete the NATS data of {}: {e}", self.namespace),
        }
    }
}
