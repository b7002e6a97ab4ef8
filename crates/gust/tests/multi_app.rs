//! End-to-end: `gust up <folder>` on a folder of apps serves them all from
//! one process, each under `/<folder-name>/` on the front listener, with its
//! own `.gust/` data folder and its own host for the CLI; apps that fail to
//! load or start are reported without stopping the others.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Writes app `name` under `root`: one raw wasi:http function at
/// `/<route>/{*rest}`.
fn app(root: &Path, name: &str, function: &str, route: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("gust.toml"),
        format!(
            r#"
[app]
name = "{name}"

[[function]]
name = "{function}"
source = "raw.wasm"
trigger = {{ http = {{ route = "/{route}/{{*rest}}", auth = "anonymous" }} }}
"#
        ),
    )
    .unwrap();
    std::fs::copy(guest("raw-wasip2"), dir.join("raw.wasm")).unwrap();
}

/// The URL recorded in `<app>/.gust/host.json`, if a host runs for it.
fn host_url(app: &Path) -> Option<String> {
    let text = std::fs::read_to_string(app.join(".gust/host.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(v["url"].as_str()?.to_string())
}

#[test]
fn a_folder_of_apps_runs_together_under_prefixes() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    app(root, "alpha", "alpha-raw", "a");
    app(root, "beta", "beta-raw", "b");
    // Loads, but its component is not WebAssembly: fails when the host starts.
    app(root, "broken", "broken-raw", "x");
    std::fs::write(root.join("broken/raw.wasm"), b"not wasm").unwrap();
    // Does not even parse.
    std::fs::create_dir_all(root.join("typo")).unwrap();
    std::fs::write(root.join("typo/gust.toml"), "[app\nname = ").unwrap();
    // Not an app: ignored.
    std::fs::create_dir_all(root.join("docs")).unwrap();

    let mut host = up(root, &["--quiet", "--no-watch"]);
    let front = host.url.clone();

    // Each app answers under its own prefix, with the prefix stripped and the
    // query passed through.
    let r = get(&format!("{front}/alpha/a/one?x=1&y=two"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "raw wasip2: /a/one?x=1&y=two");
    let r = send("POST", &format!("{front}/beta/b/two"), &[], b"payload");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "raw wasip2: /b/two");
    assert_eq!(r.header("x-request-id").map(str::is_empty), Some(false));
    // Apps are separate: alpha has no `/b/...` route.
    assert_eq!(get(&format!("{front}/alpha/b/two"), &[]).status, 404);
    // The admin API of each app is reachable under its prefix too.
    let r = get(&format!("{front}/alpha/_gust/openapi.json"), &[]);
    assert_eq!(r.status, 200, "{r:?}");

    // A page of an app calling an absolute path reaches the same app.
    let r = get(
        &format!("{front}/a/from-page"),
        &[("referer", &format!("{front}/alpha/index.html"))],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "raw wasip2: /a/from-page");
    assert_eq!(get(&format!("{front}/nowhere/a/x"), &[]).status, 404);

    // The failed apps are named, the others listed with links.
    let index = get(&format!("{front}/"), &[]);
    assert_eq!(index.status, 200);
    for needle in [
        format!("{front}/alpha/"),
        format!("{front}/beta/"),
        "broken".to_string(),
        "FAILED".to_string(),
        "typo".to_string(),
    ] {
        assert!(index.body.contains(&needle), "{needle} in {}", index.body);
    }
    let html = get(&format!("{front}/"), &[("accept", "text/html")]);
    assert!(
        html.body.contains("<a href=\"/alpha/\">alpha</a>"),
        "{html:?}"
    );
    let r = get(&format!("{front}/broken/x/1"), &[]);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("broken"), "{r:?}");
    let stderr = host.stderr();
    assert!(
        stderr.contains("app `broken` failed to start") && stderr.contains("app `typo` failed"),
        "{stderr}"
    );

    // Each app has its own data folder and host; the CLI works per app.
    for (name, function, route) in [("alpha", "alpha-raw", "a"), ("beta", "beta-raw", "b")] {
        let dir = root.join(name);
        assert!(dir.join(".gust/keys.json").is_file(), "{name} keys");
        let direct = host_url(&dir).unwrap_or_else(|| panic!("{name} host.json"));
        assert_ne!(direct, front);
        let r = get(&format!("{direct}/{route}/direct"), &[]);
        assert_eq!(r.body, format!("raw wasip2: /{route}/direct"));
        let (code, out, err) = gust(&["ls", "--app", dir.to_str().unwrap()], root);
        assert_eq!(code, 0, "gust ls --app {name}: {err}");
        assert!(out.contains(function), "{out}");
        let other = if name == "alpha" {
            "beta-raw"
        } else {
            "alpha-raw"
        };
        assert!(!out.contains(other), "{out}");
    }
    assert!(!root.join(".gust/host.json").exists());
    assert!(host_url(&root.join("broken")).is_none());

    // SIGTERM stops every host and removes their records.
    assert_eq!(host.stop(), Some(0), "{}", host.stderr());
    assert!(eventually(Duration::from_secs(5), || {
        host_url(&root.join("alpha")).is_none() && host_url(&root.join("beta")).is_none()
    }));
}

#[test]
fn a_folder_whose_apps_all_fail_exits_with_an_error() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("typo")).unwrap();
    std::fs::write(root.path().join("typo/gust.toml"), "[app\n").unwrap();
    let (code, _, err) = gust(
        &[
            "up",
            root.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        root.path(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("typo") && err.contains("none of the"), "{err}");
}
