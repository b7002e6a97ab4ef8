//! End-to-end: files copied into a container folder with `cp` trigger a
//! function once per version, across restarts; failing files are poisoned.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn logs(app: &TestApp) -> String {
    function_logs(app.path(), "load")
}

fn cp(dir: &Path, name: &str, content: &str, dest: &Path) {
    let src = dir.join(name);
    std::fs::write(&src, content).unwrap();
    std::fs::create_dir_all(dest).unwrap();
    let status = Command::new("cp")
        .arg(&src)
        .arg(dest.join(name))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn copied_files_are_processed_once_per_version() {
    let app = TestApp::new(
        r#"
[app]
name = "blobs"
[[function]]
name = "load"
source = "probe.wasm"
trigger = { blob = { container = "uploads", path = "incoming/{name}.csv" } }
bindings = { seen = { kv = "seen" } }
retry = { strategy = "fixed", max_attempts = 2, min = "100ms", max = "100ms" }
"#,
    );
    app.add_component("probe.wasm", &guest("event-probe"));
    let scratch = tempfile::tempdir().unwrap();
    let incoming = app.path().join(".gust/blobs/uploads/incoming");
    {
        let mut host = up(app.path(), &["--quiet", "--no-watch"]);
        cp(scratch.path(), "jan.csv", "jan-rows", &incoming);
        cp(scratch.path(), "notes.txt", "ignored", &incoming);
        cp(scratch.path(), "broken.csv", "fail", &incoming);
        let done = eventually(Duration::from_secs(30), || {
            let l = logs(&app);
            l.contains("handled jan-rows #1") && l.matches("failed (retryable)").count() >= 2
        });
        assert!(done, "{}", logs(&app));
        std::thread::sleep(Duration::from_millis(2500));
        let l = logs(&app);
        assert_eq!(l.matches("handled jan-rows").count(), 1, "{l}");
        assert_eq!(
            l.matches("failed (retryable)").count(),
            2,
            "poisoned after 2 attempts: {l}"
        );
        assert!(!l.contains("ignored"), "{l}");
        host.stop();
    }
    // After a restart nothing already processed (or poisoned) runs again; a
    // new version of a file does.
    let _host = up(app.path(), &["--quiet", "--no-watch"]);
    std::thread::sleep(Duration::from_millis(2000));
    let l = logs(&app);
    assert!(
        !l.contains("handled jan-rows") && !l.contains("failed"),
        "{l}"
    );
    cp(scratch.path(), "jan.csv", "jan-rows-v2", &incoming);
    let again = eventually(Duration::from_secs(30), || {
        logs(&app).contains("handled jan-rows-v2 #1")
    });
    assert!(again, "{}", logs(&app));
}
