//! First run outside the repository, as a newcomer would: a `gust` binary
//! copied out of the build folder creates apps with `gust new` in another
//! folder and brings them up; an example copied out of the repository builds
//! and runs. The SDK comes from inside the binary (written to the cache
//! folder on first use): nothing in these apps points into the source tree.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A copy of the built `gust` in a folder of its own, run with a cache
/// folder of its own (`XDG_CACHE_HOME`), so the SDK it builds with is the
/// one it carries. Guest builds share the test run's cargo target folder,
/// so the SDK's dependencies compile once for all tests.
struct CopiedGust {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    cache: tempfile::TempDir,
}

impl CopiedGust {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("gust");
        std::fs::copy(env!("CARGO_BIN_EXE_gust"), &bin).unwrap();
        Self {
            _dir: dir,
            bin,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// The copied binary, run in `cwd`.
    fn command(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(cwd)
            .env("CARGO_TARGET_DIR", guest_target())
            .env("XDG_CACHE_HOME", self.cache.path())
            .env_remove("GUST_CACHE_DIR")
            .env_remove("GUST_SDK_PATH")
            .env_remove("GUST_URL")
            .env_remove("GUST_KEY")
            .env_remove("GUST_LISTEN");
        cmd
    }

    /// Runs a subcommand to completion: (exit code, stdout, stderr).
    fn run(&self, args: &[&str], cwd: &Path) -> (i32, String, String) {
        let out = self.command(cwd).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The SDK versions this binary wrote to its cache.
    fn written_sdks(&self) -> Vec<PathBuf> {
        let dir = self.cache.path().join("gust/sdk");
        std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Copies the folder `from` to `to`, leaving out build and state folders.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == ".gust" || name == "target" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn gust_new_apps_build_and_run_from_a_copied_binary() {
    let gust = CopiedGust::new();
    let apps = tempfile::tempdir().unwrap();
    for (template, name) in [("http-rust", "web"), ("event-rust", "jobs")] {
        let (code, out, err) = gust.run(&["new", template, name], apps.path());
        assert_eq!(code, 0, "gust new {template}: {err}");
        assert!(out.contains("next: gust up"), "{out}");
    }
    // The SDK is named by version, never by a path of this machine.
    for krate in ["web/functions/hello", "jobs/functions/worker"] {
        let manifest = std::fs::read_to_string(apps.path().join(krate).join("Cargo.toml")).unwrap();
        assert!(manifest.contains("gust-sdk = \"0.1\""), "{manifest}");
        assert!(!manifest.contains("path"), "{manifest}");
    }

    // Both apps in one `gust up` of their folder, behind the front listener.
    let host = up_command(gust.command(apps.path()), apps.path(), &["--no-watch"]);
    let stderr = host.stderr();
    for phase in [
        "toolchain: wasm32-wasip2: done",
        "building 2 apps: 2 function crates in 2 cargo runs",
        "starting `web`",
    ] {
        assert!(stderr.contains(phase), "no `{phase}` line in:\n{stderr}");
    }
    let sdks = gust.written_sdks();
    assert_eq!(sdks.len(), 1, "{sdks:?}");
    assert!(sdks[0].join("sdk/rust/gust-sdk/Cargo.toml").is_file());
    assert!(sdks[0].join("wit/gust.wit").is_file());

    // HTTP: the template's function answers through the front.
    let r = get(&format!("{}/web/hello?name=Ada", host.url), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "hello, Ada! (call #1)");

    // An event: a message on queue `jobs` runs the worker.
    let jobs = apps.path().join("jobs");
    let (code, _, err) = gust.run(
        &[
            "queue",
            "send",
            "jobs",
            "--data",
            r#"{"id":"42","text":"first run here"}"#,
        ],
        &jobs,
    );
    assert_eq!(code, 0, "gust queue send: {err}");
    let mut logs = String::new();
    let handled = eventually(Duration::from_secs(30), || {
        logs = gust.run(&["logs", "worker", "--tail", "100"], &jobs).1;
        logs.contains("job 42 (attempt 1): 3 words")
    });
    assert!(handled, "the worker never handled the job; logs:\n{logs}");

    // The front's index: HTML for a browser, text for curl.
    let page = get(&format!("{}/", host.url), &[("accept", "text/html")]);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("href=\"/web/hello\""), "{}", page.body);
    assert!(page.body.contains("href=\"/jobs/\""), "{}", page.body);
    let text = get(&format!("{}/", host.url), &[]);
    assert!(
        text.body.contains("/web/") && text.body.contains("/jobs/"),
        "{}",
        text.body
    );
}

#[test]
fn an_example_copied_out_of_the_repository_builds_and_runs() {
    let gust = CopiedGust::new();
    let out = tempfile::tempdir().unwrap();
    let app = out.path().join("iot-stream");
    copy_tree(&repo().join("examples/iot-stream"), &app);

    let mqtt = format!("127.0.0.1:{}", free_port());
    let host = up_command(
        gust.command(&app),
        &app,
        &["--quiet", "--no-watch", "--mqtt-listen", &mqtt],
    );
    assert_eq!(
        gust.written_sdks().len(),
        1,
        "the SDK was not written by the copied binary"
    );

    let reading = r#"{"seq": 1, "ts": 1735689600000, "temperature": 21.5}"#;
    let r = send(
        "POST",
        &format!("{}/api/devices/d01/telemetry", host.url),
        &[("content-type", "application/json")],
        reading.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    let mut last = serde_json::Value::Null;
    let stored = eventually(Duration::from_secs(30), || {
        last = get(&format!("{}/api/devices", host.url), &[]).json();
        // The list and the totals are two queries: wait until both see it.
        last["totals"]["readings"] == 1 && last["devices"][0]["device"] == "d01"
    });
    assert!(stored, "the reading never reached the query API: {last}");
    assert_eq!(last["devices"][0]["device"], "d01", "{last}");
}
