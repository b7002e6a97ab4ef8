//! End-to-end: the real `gust up` serving HTTP functions — routes, params,
//! auth levels, limits and guests that misbehave.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// An app of several functions over the `misbehave` test guest and one
/// third-party component built with only the `wasip2` crate.
fn app() -> TestApp {
    let app = TestApp::new(
        r#"
[app]
name = "trigger-test"

[variables]
greeting = { default = "hi" }

[[function]]
name = "open"
source = "misbehave.wasm"
trigger = { http = { route = "/open/{action}", methods = ["GET", "POST"], auth = "anonymous" } }
bindings = { store = { kv = "hits" } }
limits = { memory = "32MiB", timeout = "1s", concurrency = 8, max_body = "1KiB" }

[[function]]
name = "items"
source = "misbehave.wasm"
trigger = { http = { route = "/items/{id}/{action}", methods = ["PUT"], auth = "anonymous" } }

[[function]]
name = "keyed"
source = "misbehave.wasm"
trigger = { http = { route = "/keyed/{action}", auth = "function" } }

[[function]]
name = "adminonly"
source = "misbehave.wasm"
trigger = { http = { route = "/admin-only/{action}", auth = "admin" } }

[[function]]
name = "single"
source = "misbehave.wasm"
trigger = { http = { route = "/single/{action}", auth = "anonymous" } }
limits = { concurrency = 1 }

[[function]]
name = "raw"
source = "raw.wasm"
trigger = { http = { route = "/raw/{*rest}", auth = "anonymous" } }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("raw.wasm", &guest("raw-wasip2"));
    app
}

#[test]
fn routes_bind_params_query_and_body() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let r = send(
        "PUT",
        &format!("{}/items/a%20b/echo?x=1&y=two", host.url),
        &[],
        b"payload",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body"], "payload");
    assert_eq!(echo["function"], "items");
    assert_eq!(echo["route"], "/items/{id}/{action}");
    let params = echo["params"].to_string();
    assert!(
        params.contains("a b") && params.contains("echo"),
        "{params}"
    );
    assert!(
        echo["query"].to_string().contains("two"),
        "{}",
        echo["query"]
    );

    let r = get(&format!("{}/nothing/here", host.url), &[]);
    assert_eq!(r.status, 404);
    let r = get(&format!("{}/items/1/echo", host.url), &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PUT"));
}

#[test]
fn auth_levels_accept_the_right_keys_only() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let keys = keys(app.path());
    let (admin, hostkey) = (
        keys["admin"].as_str().unwrap(),
        keys["host"].as_str().unwrap(),
    );
    let fkey = keys["functions"]["keyed"].as_str().unwrap();
    let other_fkey = keys["functions"]["open"].as_str().unwrap();
    let keyed = format!("{}/keyed/ok", host.url);

    assert_eq!(get(&keyed, &[]).status, 401);
    assert_eq!(get(&keyed, &[("x-gust-key", "wrong")]).status, 403);
    assert_eq!(get(&keyed, &[("x-gust-key", other_fkey)]).status, 403);
    for key in [fkey, hostkey, admin] {
        assert_eq!(get(&keyed, &[("x-gust-key", key)]).status, 200);
    }
    assert_eq!(get(&format!("{keyed}?code={fkey}"), &[]).status, 200);

    let admin_route = format!("{}/admin-only/ok", host.url);
    assert_eq!(get(&admin_route, &[("x-gust-key", hostkey)]).status, 403);
    assert_eq!(get(&admin_route, &[("x-gust-key", admin)]).status, 200);

    // The key never reaches the function.
    let echo = get(&format!("{}/keyed/echo", host.url), &[("x-gust-key", fkey)]).json();
    assert!(!echo.to_string().contains(fkey));
    // The admin API wants the admin key.
    assert_eq!(
        get(
            &format!("{}/_gust/functions", host.url),
            &[("x-gust-key", hostkey)]
        )
        .status,
        401
    );
    assert_eq!(
        get(
            &format!("{}/_gust/functions", host.url),
            &[("x-gust-key", admin)]
        )
        .status,
        200
    );
}

#[test]
fn body_limit_gives_413_with_or_without_length() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let url = format!("{}/open/echo", host.url);
    assert_eq!(send("POST", &url, &[], &[b'a'; 1000]).status, 200);
    assert_eq!(send("POST", &url, &[], &[b'a'; 2048]).status, 413);
    assert_eq!(post_chunked(&url, vec![b'a'; 4096]).status, 413);
    assert_eq!(get(&format!("{}/open/ok", host.url), &[]).status, 200);
}

#[test]
fn over_the_concurrency_limit_gets_429_with_retry_after() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    // Everything slow (a `gust keys` process) before the long request starts,
    // so a loaded machine cannot let it finish before it is observed.
    let admin = keys(app.path())["admin"].as_str().unwrap().to_string();
    let slow = format!("{}/single/slow?ms=6000", host.url);
    let busy = std::thread::spawn(move || get(&slow, &[]));
    let functions = format!("{}/_gust/functions", host.url);
    let running = eventually(Duration::from_secs(20), || {
        let list = get(&functions, &[("x-gust-key", &admin)]).json();
        let single = list
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "single")
            .unwrap()
            .clone();
        single["stats"]["running"] == 1
    });
    if !running {
        let list = get(&functions, &[("x-gust-key", &admin)]).json();
        panic!(
            "the slow request never started: {:?}\nfunctions: {list}\nstderr: {}",
            busy.join().unwrap(),
            host.stderr()
        );
    }
    let r = get(&format!("{}/single/ok", host.url), &[]);
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(get(&format!("{}/single/ok", host.url), &[]).status, 200);
}

#[test]
fn a_trapping_guest_gets_500_and_the_host_keeps_serving() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let r = get(&format!("{}/open/trap", host.url), &[]);
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"], "trap");
    assert_eq!(get(&format!("{}/open/ok", host.url), &[]).body, "ok");
    // The panic message reaches the function's logs.
    let found = eventually(Duration::from_secs(5), || {
        let (_, out, _) = gust(
            &["logs", "open", "--app", app.path().to_str().unwrap()],
            app.path(),
        );
        out.contains("boom")
    });
    assert!(found, "panic message not in logs");
}

#[test]
fn an_infinite_loop_is_interrupted_with_504() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let started = Instant::now();
    let r = get(&format!("{}/open/loop", host.url), &[]);
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.json()["error"], "timeout");
    // The 1 s timeout interrupted it (generous bound for a loaded CI machine).
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(get(&format!("{}/open/ok", host.url), &[]).status, 200);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_limit() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let r = get(&format!("{}/open/oom", host.url), &[]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.json()["error"], "out-of-memory");
    assert_eq!(get(&format!("{}/open/ok", host.url), &[]).status, 200);
}

#[test]
fn a_stack_overflow_is_contained() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let r = get(&format!("{}/open/stack", host.url), &[]);
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.json()["error"], "stack-overflow");
    assert_eq!(get(&format!("{}/open/ok", host.url), &[]).status, 200);
}

#[test]
fn a_third_party_wasi_http_component_runs_unchanged() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let r = get(&format!("{}/raw/deep/path?q=1", host.url), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "raw wasip2: /raw/deep/path?q=1");
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

#[test]
fn kv_is_granted_only_for_declared_bindings() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let url = format!("{}/open/kv", host.url);
    let first: u64 = get(&url, &[]).body.parse().unwrap();
    let second: u64 = get(&url, &[]).body.parse().unwrap();
    assert_eq!(second, first + 1);
    assert_eq!(
        get(&format!("{}/open/kv-denied", host.url), &[]).body,
        "denied"
    );
    // `items` declared no kv binding at all.
    let r = send("PUT", &format!("{}/items/1/kv", host.url), &[], b"");
    assert_ne!(r.status, 200, "{r:?}");
}

#[test]
fn variables_come_from_the_manifest_or_the_environment() {
    let app = app();
    {
        let host = up(app.path(), &["--quiet"]);
        assert_eq!(
            get(&format!("{}/open/var?name=greeting", host.url), &[]).body,
            "hi"
        );
    }
    let host = up_with_env(
        app.path(),
        &["--quiet"],
        &[("GUST_VAR_GREETING", "from env")],
    );
    assert_eq!(
        get(&format!("{}/open/var?name=greeting", host.url), &[]).body,
        "from env"
    );
}

#[test]
fn large_response_bodies_stream_whole() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    let r = get(&format!("{}/open/big", host.url), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1 << 20);
}

#[test]
fn instance_reuse_mode_serves_the_same_answers() {
    let app = app();
    let host = up(app.path(), &["--quiet", "--reuse-instances"]);
    for _ in 0..20 {
        assert_eq!(get(&format!("{}/open/ok", host.url), &[]).body, "ok");
    }
    // A trap discards the instance; the next request still works.
    assert_eq!(get(&format!("{}/open/trap", host.url), &[]).status, 500);
    assert_eq!(get(&format!("{}/open/ok", host.url), &[]).body, "ok");
}

#[test]
fn secret_variables_never_reach_the_logs() {
    let app = TestApp::new(
        r#"
[app]
name = "secrets"

[variables]
token = { required = true, secret = true }

[[function]]
name = "open"
source = "misbehave.wasm"
trigger = { http = { route = "/open/{action}", auth = "anonymous" } }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    // The guest logs "hello from guest": part of it is the secret here.
    let host = up_with_env(
        app.path(),
        &["--quiet"],
        &[("GUST_VAR_TOKEN", "from guest")],
    );
    // The function itself reads the value...
    let r = get(&format!("{}/open/var?name=token", host.url), &[]);
    assert_eq!(r.body, "from guest");
    assert_eq!(get(&format!("{}/open/log", host.url), &[]).status, 200);
    // ...but no log shows it.
    let logs = function_logs(app.path(), "open");
    assert!(logs.contains("hello [secret token]"), "{logs}");
    assert!(!logs.contains("from guest"), "{logs}");
    let file = std::fs::read_to_string(app.path().join(".gust/logs/functions.log")).unwrap();
    assert!(!file.contains("from guest"), "{file}");
    let (code, out, err) = gust(&["ls", "--app", app.path().to_str().unwrap()], app.path());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("from guest"), "{out}");
}

/// A local HTTP server that answers `ok` to every request after `delay`,
/// counting the requests in progress at once; returns its address, the
/// highest count seen and the number of connections accepted.
fn counting_server(
    delay: Duration,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (now, max, accepted) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (max_seen, accepted_seen) = (max.clone(), accepted.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            accepted.fetch_add(1, Ordering::SeqCst);
            let (now, max) = (now.clone(), max.clone());
            std::thread::spawn(move || {
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(current, Ordering::SeqCst);
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                std::thread::sleep(delay);
                // Counted out before answering: the host holds its permit
                // until it has read this answer.
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    (addr, max_seen, accepted_seen)
}

/// Guests that flood their log, open hundreds of outbound requests at once
/// or reach for files, environment and sockets they were not granted: each
/// is contained and the host keeps serving.
#[test]
fn hostile_guests_cannot_hurt_the_host() {
    use std::sync::atomic::Ordering;
    let app = TestApp::new(
        r#"
[app]
name = "hostile-guests"

[[function]]
name = "rude"
source = "misbehave.wasm"
trigger = { http = { route = "/rude/{action}", auth = "anonymous" } }
outbound_http = ["http://127.0.0.1:*"]
limits = { timeout = "60s" }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    let host = up(app.path(), &["--quiet"]);
    let url = |action: &str| format!("{}/rude/{action}", host.url);

    // A log flood: the invocation keeps its first lines and a note.
    let r = get(&url("log-flood?lines=100000"), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "logged 100000"));
    let logs = gust(
        &[
            "logs",
            "rude",
            "--tail",
            "5000",
            "--app",
            app.path().to_str().unwrap(),
        ],
        app.path(),
    )
    .1;
    let kept = logs.matches("flood line").count();
    assert!((1..=1000).contains(&kept), "{kept} flood lines kept");
    assert!(
        logs.contains("log limit reached: 99000 lines of this invocation were dropped"),
        "{}",
        &logs[logs.len().saturating_sub(2000)..]
    );
    let file = std::fs::metadata(app.path().join(".gust/logs/functions.log")).unwrap();
    assert!(
        file.len() < 1 << 20,
        "the log file grew to {} bytes",
        file.len()
    );

    // Hundreds of outbound requests at once: at most 64 are open together,
    // every one is answered (permits go out in the order the guest sent
    // its requests, which it then reads in that order), and other requests
    // are served meanwhile.
    let (authority, max_open, _) = counting_server(Duration::from_millis(100));
    let flood = std::thread::spawn({
        let u = url(&format!("outbound-flood?n=300&authority={authority}"));
        move || get(&u, &[])
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&url("ok"), &[]).body, "ok");
    let r = flood.join().unwrap();
    assert_eq!(r.body, "ok 300 failed 0 refused 0", "{r:?}");
    let max_open = max_open.load(Ordering::SeqCst);
    assert!(
        (2..=64).contains(&max_open),
        "{max_open} requests were open at once"
    );

    // Files, environment and sockets were never granted.
    assert_eq!(get(&url("fs"), &[]).body, "denied");
    assert_eq!(get(&url("env"), &[]).body, "0");
    let (addr, _, accepted) = counting_server(Duration::ZERO);
    assert_eq!(
        get(&url(&format!("socket?addr={addr}")), &[]).body,
        "denied"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the guest's socket connected"
    );
    assert_eq!(get(&url("ok"), &[]).body, "ok");
}
