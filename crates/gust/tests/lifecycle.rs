//! End-to-end: the life of a host — hot reload, graceful shutdown, restart,
//! the compile cache, bad manifests and the CLI commands around it.

mod common;

use std::time::Duration;

use common::*;

fn manifest(route: &str, greeting: &str) -> String {
    format!(
        r#"
[app]
name = "life"
[variables]
greeting = {{ default = "{greeting}" }}
[[function]]
name = "fn"
source = "fn.wasm"
trigger = {{ http = {{ route = "{route}/{{action}}", auth = "anonymous" }} }}
bindings = {{ store = {{ kv = "hits" }} }}
"#
    )
}

fn app() -> TestApp {
    let app = TestApp::new(&manifest("/a", "one"));
    app.add_component("fn.wasm", &guest("misbehave"));
    app
}

#[test]
fn hot_reload_swaps_manifest_and_component_without_dropping_requests() {
    let app = app();
    let host = up(app.path(), &[]);
    let url = host.url.clone();
    assert_eq!(get(&format!("{url}/a/var?name=greeting"), &[]).body, "one");

    // A request in flight while the app reloads finishes on the old version.
    let slow = format!("{url}/a/slow?ms=2000");
    let in_flight = std::thread::spawn(move || get(&slow, &[]));
    std::thread::sleep(Duration::from_millis(300));
    app.write("gust.toml", &manifest("/b", "two"));
    let reloaded = eventually(Duration::from_secs(30), || {
        get(&format!("{url}/b/var?name=greeting"), &[]).body == "two"
    });
    assert!(
        reloaded,
        "manifest change not picked up; stderr:\n{}",
        host.stderr()
    );
    assert_eq!(get(&format!("{url}/a/ok"), &[]).status, 404);
    let r = in_flight.join().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "done"));

    // A new component under the same name is served after the reload.
    app.add_component("fn.wasm", &guest("raw-wasip2"));
    let swapped = eventually(Duration::from_secs(30), || {
        get(&format!("{url}/b/ok"), &[])
            .body
            .starts_with("raw wasip2")
    });
    assert!(
        swapped,
        "component change not picked up; stderr:\n{}",
        host.stderr()
    );

    // A broken manifest keeps the running version serving.
    app.write(
        "gust.toml",
        "[app]\nname = \"life\"\n[[function]]\nname = \"fn\"\n",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        get(&format!("{url}/b/ok"), &[])
            .body
            .starts_with("raw wasip2")
    );
    assert!(host.stderr().contains("reload failed"), "{}", host.stderr());
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let app = app();
    let mut host = up(app.path(), &["--quiet", "--no-watch"]);
    let slow = format!("{}/a/slow?ms=1500", host.url);
    let in_flight = std::thread::spawn(move || get(&slow, &[]));
    std::thread::sleep(Duration::from_millis(400));
    let code = host.stop();
    let r = in_flight.join().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "done"));
    assert_eq!(code, Some(0), "stderr:\n{}", host.stderr());
    assert!(!app.path().join(".gust/host.json").exists());
}

#[test]
fn kv_data_survives_a_restart_and_the_compile_cache_is_reused() {
    let app = app();
    let cache = tempfile::tempdir().unwrap();
    let cache_env = [("GUST_CACHE_DIR", cache.path().to_str().unwrap())];
    let first = {
        let mut host = up_with_env(app.path(), &["--quiet", "--no-watch"], &cache_env);
        let n: u64 = get(&format!("{}/a/kv", host.url), &[])
            .body
            .parse()
            .unwrap();
        host.stop();
        n
    };
    let cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let modified = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();

    let host = up_with_env(app.path(), &["--quiet", "--no-watch"], &cache_env);
    let second: u64 = get(&format!("{}/a/kv", host.url), &[])
        .body
        .parse()
        .unwrap();
    assert_eq!(second, first + 1);
    // Not recompiled: the same compiled file, untouched.
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        modified
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
}

#[test]
fn bad_manifests_name_file_line_key_and_fix() {
    let cases = [
        (
            "[app]\nname = \"x\"\n[[function]]\nname = \"f\"\nsource = \"fn.wasm\"\ntrigger = { htpp = { route = \"/x\" } }\n",
            ":6:",
            "htpp",
        ),
        (
            "[app]\nname = \"x\"\n[[function]]\nname = \"f\"\nsource = \"fn.wasm\"\ntrigger = { http = { route = \"x\" } }\n",
            ":6:",
            "must start with `/`",
        ),
        (
            "[app]\nname = \"x\"\n[[function]]\nname = \"f\"\nsource = \"fn.wasm\"\ntrigger = { http = { route = \"/x\" } }\n[[function]]\nname = \"g\"\nsource = \"fn.wasm\"\ntrigger = { http = { route = \"/x\" } }\n",
            ":7:",
            "clashes",
        ),
        (
            "[app]\nname = \"x\"\n[[function]]\nname = \"f\"\nsource = \"missing/crate\"\ntrigger = { http = { route = \"/x\" } }\n",
            ":5:",
            "missing/crate",
        ),
        ("[app\nname = \"x\"\n", ":1:", "gust.toml"),
    ];
    for (text, location, words) in cases {
        let app = TestApp::new(text);
        app.add_component("fn.wasm", &guest("raw-wasip2"));
        let (code, _out, err) = gust(
            &[
                "up",
                app.path().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            app.path(),
        );
        assert_eq!(code, 1, "{text}\n{err}");
        assert!(err.contains("gust.toml") && err.contains(location), "{err}");
        assert!(err.contains(words), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }
}

#[test]
fn cli_keys_ls_invoke_and_logs_talk_to_the_running_host() {
    let app = app();
    let dir = app.path().to_str().unwrap();

    let (code, out, err) = gust(&["keys", dir], app.path());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("host ") && lines[0].len() == 5 + 64,
        "{out}"
    );
    assert!(lines[1].starts_with("function fn "), "{out}");
    assert!(lines[2].starts_with("admin "), "{out}");
    let (_, bare, _) = gust(&["keys", "--host", dir], app.path());
    assert_eq!(bare.trim(), &lines[0][5..]);

    let (code, _, err) = gust(&["ls", "--app", dir], app.path());
    assert_eq!(code, 1);
    assert!(err.contains("gust up"), "{err}");

    let _host = up(app.path(), &["--quiet"]);
    let (code, out, err) = gust(
        &[
            "invoke",
            "fn",
            "--path",
            "/a/echo?who=cli",
            "--data",
            "hi",
            "--app",
            dir,
        ],
        app.path(),
    );
    assert_eq!(code, 0, "{err}");
    let echo: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["body"], "hi");
    assert_eq!(echo["method"], "POST");
    assert!(echo["query"].to_string().contains("cli"));

    let (code, _, err) = gust(
        &["invoke", "fn", "--path", "/a/trap", "--app", dir],
        app.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("500"), "{err}");

    let (code, out, _) = gust(
        &["invoke", "fn", "--path", "/a/log", "--app", dir],
        app.path(),
    );
    assert_eq!((code, out.trim()), (0, "logged"));
    let (code, out, _) = gust(&["logs", "fn", "--app", dir], app.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("hello from guest") && out.contains("[fn]"),
        "{out}"
    );

    let (code, out, err) = gust(&["ls", "--app", dir], app.path());
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("fn "))
        .expect("a row for fn");
    assert!(
        row.contains("/a/{action}") && row.contains("anonymous"),
        "{out}"
    );

    let (code, _, err) = gust(&["invoke", "nope", "--app", dir], app.path());
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
}

#[test]
fn logs_follow_streams_new_lines() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let mut follower = gust_command()
        .args(["logs", "-f", "fn", "--app", app.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    get(&format!("{}/a/log", host.url), &[]);
    let mut out = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("hello from guest") {
                let _ = tx.send(seen.clone());
                break;
            }
        }
    });
    let seen = rx.recv_timeout(Duration::from_secs(20));
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(seen.is_ok(), "no streamed line");
}

#[test]
fn gust_new_then_build_produces_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("my-app");
    let (code, out, err) = gust(&["new", "http-rust", app.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gust up"), "{out}");
    let (code, out, err) = gust(&["build", app.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    let wasm = out
        .split_whitespace()
        .nth(1)
        .expect("a built component path");
    let bytes = std::fs::read(wasm).unwrap();
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "not a component");

    let (code, _, err) = gust(
        &["new", "nope", dir.path().join("x").to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("http-rust"), "{err}");
}

#[test]
fn editing_a_function_crate_rebuilds_and_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("reload-probe");
    let (code, _, err) = gust(&["new", "http-rust", app.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{err}");
    let host = up(&app, &["--quiet"]);
    let url = format!("{}/hello?name=Ada", host.url);
    assert!(get(&url, &[]).body.starts_with("hello, Ada!"));

    let source = app.join("functions/hello/src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        text.replace("{greeting}, {name}!", "{greeting} again, {name}!"),
    )
    .unwrap();
    let rebuilt = eventually(Duration::from_secs(180), || {
        get(&url, &[]).body.starts_with("hello again, Ada!")
    });
    assert!(
        rebuilt,
        "source change not rebuilt; stderr:\n{}",
        host.stderr()
    );
}
