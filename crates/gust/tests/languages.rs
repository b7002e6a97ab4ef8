//! End-to-end: functions in JavaScript, TypeScript and Python.
//!
//! Every template of `gust new` for those languages, created and run the way
//! a user does (`gust new`, `gust up`), answering HTTP or handling a queue
//! message; a syntax error named by file and line; an edit hot-reloaded.
//! The toolchains (componentize-js + rolldown from npm, componentize-py from
//! PyPI) are installed on first use into the shared test cache
//! (`target/gust-cache/toolchains`), once for every test that runs at once.
//!
//! All five template apps run in one `gust up` of their parent folder, so
//! their components build side by side (a JavaScript build takes ~10–25 s of
//! one core, a Python build ~15 s). Outbound HTTP (JS `fetch`, Python
//! `gust.outbound`) has one app of its own: one JS and one Python component.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const HTTP_TEMPLATES: &[&str] = &["http-js", "http-ts", "http-py"];
const EVENT_TEMPLATES: &[&str] = &["event-js", "event-py"];

#[test]
fn every_language_template_answers_under_gust_up_and_hot_reloads() {
    let apps = tempfile::tempdir().unwrap();
    for template in HTTP_TEMPLATES.iter().chain(EVENT_TEMPLATES) {
        let (code, out, err) = gust(&["new", template, template], apps.path());
        assert_eq!(code, 0, "gust new {template}: {err}");
        assert!(out.contains("next: gust up"), "{out}");
    }
    let ts = apps.path().join("http-ts/functions/hello");
    let tsconfig = std::fs::read_to_string(ts.join("tsconfig.json")).unwrap();
    assert!(tsconfig.contains("sdk/js/src/index.ts"), "{tsconfig}");

    let host = up(apps.path(), &[]);
    let stderr = host.stderr();
    assert!(
        stderr.contains("3 JavaScript/TypeScript and 2 Python functions"),
        "{stderr}"
    );

    // HTTP: each template's function answers on its route, counting in kv.
    for template in HTTP_TEMPLATES {
        let url = format!("{}/{template}/hello?name=Ada", host.url);
        let r = get(&url, &[]);
        assert_eq!(r.status, 200, "{template}: {r:?}\n{}", host.stderr());
        assert_eq!(r.body, "hello, Ada! (call #1)", "{template}");
        assert_eq!(get(&url, &[]).body, "hello, Ada! (call #2)", "{template}");
    }

    // Events: a queue message runs the worker; one that is not a job goes
    // straight to the dead-letter queue (a permanent error).
    for template in EVENT_TEMPLATES {
        let app = apps.path().join(template);
        let job = r#"{"id":"42","text":"hello from a queue"}"#;
        let (code, _, err) = gust(&["queue", "send", "jobs", "--data", job], &app);
        assert_eq!(code, 0, "gust queue send: {err}");
        let mut logs = String::new();
        let handled = eventually(Duration::from_secs(60), || {
            logs = function_logs(&app, "worker");
            logs.contains("job 42 (attempt 1): 4 words")
        });
        assert!(
            handled,
            "{template}: the job was not handled; logs:\n{logs}"
        );

        let (code, _, err) = gust(&["queue", "send", "jobs", "--data", "not json"], &app);
        assert_eq!(code, 0, "gust queue send: {err}");
        let mut dead = String::new();
        let dead_lettered = eventually(Duration::from_secs(60), || {
            dead = gust(&["queue", "dlq", "list", "jobs"], &app).1;
            dead.contains("not a job")
        });
        assert!(dead_lettered, "{template}: no dead letter; dlq:\n{dead}");
        assert!(dead.contains("attempt"), "{dead}");
    }

    // Hot reload: a syntax error keeps the old version serving and names the
    // file and line; fixing it serves the new code.
    let source = ts.join("src/index.ts");
    let good = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        good.replace("return new Response(", "return new Response((("),
    )
    .unwrap();
    let mut err = String::new();
    let reported = eventually(Duration::from_secs(120), || {
        err = host.stderr();
        err.contains("reload failed") && err.contains("src/index.ts:9")
    });
    assert!(reported, "no located syntax error:\n{err}");
    let url = format!("{}/http-ts/hello?name=Ada", host.url);
    assert_eq!(get(&url, &[]).body, "hello, Ada! (call #3)");

    std::fs::write(&source, good.replace("call #", "visit #")).unwrap();
    let mut body = String::new();
    let reloaded = eventually(Duration::from_secs(120), || {
        body = get(&url, &[]).body;
        body.starts_with("hello, Ada! (visit #")
    });
    assert!(
        reloaded,
        "the edit was not served: {body}\n{}",
        host.stderr()
    );
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let apps = tempfile::tempdir().unwrap();
    let js = apps.path().join("js");
    let (code, _, err) = gust(&["new", "http-js", "js"], apps.path());
    assert_eq!(code, 0, "{err}");
    let index = js.join("functions/hello/src/index.js");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, text.replace("const calls =", "const calls = = ")).unwrap();
    let (code, _, err) = gust(&["build"], &js);
    assert_ne!(code, 0, "a broken function built");
    assert!(err.contains("src/index.js:8"), "{err}");

    let py = apps.path().join("py");
    let (code, _, err) = gust(&["new", "http-py", "py"], apps.path());
    assert_eq!(code, 0, "{err}");
    let app = py.join("functions/hello/app.py");
    let text = std::fs::read_to_string(&app).unwrap();
    std::fs::write(&app, text.replace("calls = kv", "calls = = kv")).unwrap();
    let (code, _, err) = gust(&["build"], &py);
    assert_ne!(code, 0, "a broken function built");
    assert!(err.contains("app.py:11"), "{err}");
    assert!(err.contains("SyntaxError"), "{err}");
}

/// What a [`tiny_server`] received: one `METHOD PATH BODY` line per request.
type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 server on 127.0.0.1:0 answering every request with
/// `x-upstream: tiny` and the body `got METHOD PATH BODY` (after 3 s for a
/// path starting with `/slow`); returns its address and the requests it
/// received.
fn tiny_server() -> (std::net::SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let log = log.clone();
            std::thread::spawn(move || answer(stream, &log));
        }
    });
    (addr, seen)
}

fn answer(mut stream: TcpStream, seen: &Seen) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]);
    let line = format!("{method} {path} {body}");
    seen.lock().unwrap().push(line.clone());
    if path.starts_with("/slow") {
        std::thread::sleep(Duration::from_secs(3));
    }
    let text = format!("got {line}");
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-upstream: tiny\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// The outbound-HTTP app: a JS function calling `fetch` and a Python one
/// calling `gust.outbound` (also as a queue worker, from the same folder),
/// each allowed to reach only `allowed`.
fn outbound_app(allowed: std::net::SocketAddr) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    let write = |file: &str, text: &str| {
        let path = app.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "gust.toml",
        &format!(
            r#"
[app]
name = "outbound"

[[function]]
name = "js"
source = "functions/js"
trigger = {{ http = {{ route = "/js", auth = "anonymous" }} }}
outbound_http = ["http://{allowed}"]
limits = {{ timeout = "20s" }}

[[function]]
name = "js-worker"
source = "functions/js"
trigger = {{ queue = {{ queue = "js-hooks" }} }}
outbound_http = ["http://{allowed}"]
retry = {{ strategy = "fixed", max_attempts = 2, min = "1s", max = "1s" }}
limits = {{ timeout = "20s" }}

[[function]]
name = "py"
source = "functions/py"
trigger = {{ http = {{ route = "/py", auth = "anonymous" }} }}
outbound_http = ["http://{allowed}"]
limits = {{ timeout = "20s" }}

[[function]]
name = "py-worker"
source = "functions/py"
trigger = {{ queue = {{ queue = "py-hooks" }} }}
outbound_http = ["http://{allowed}"]
retry = {{ strategy = "fixed", max_attempts = 2, min = "1s", max = "1s" }}
limits = {{ timeout = "20s" }}
"#
        ),
    );
    write(
        "functions/js/package.json",
        r#"{ "name": "outbound-js", "private": true, "type": "module" }"#,
    );
    write(
        "functions/js/src/index.js",
        r#"// GET /js?url=U → POSTs to U with fetch and answers what came back.
import { log, PermanentError } from "@gust/sdk";

export default {
  async fetch(request) {
    const target = new URL(request.url).searchParams.get("url");
    try {
      const r = await fetch(target, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "from js",
      });
      const text = await r.text();
      return new Response(`${r.status} ${r.headers.get("x-upstream")} ${text}`);
    } catch (e) {
      return new Response(`fetch failed: ${e}`, { status: 502 });
    }
  },
};

// As a queue worker (async: awaits fetch), POSTs each `{"url": U}` job to U.
export async function handle(event) {
  const job = event.json();
  await Promise.resolve();
  if (!job.url) throw new PermanentError("a hook job needs a url");
  const r = await fetch(job.url, { method: "POST", body: JSON.stringify({ job: "hook" }) });
  log.info(`hook answered ${r.status}: ${await r.text()}`);
}
"#,
    );
    write(
        "functions/py/pyproject.toml",
        "[project]\nname = \"outbound-py\"\nversion = \"0.1.0\"\n",
    );
    write(
        "functions/py/app.py",
        r#""""GET /py?url=U → POSTs to U (or GETs it with `method=GET`, waiting at
most `timeout` seconds) with gust.outbound and answers what came back; as a
queue worker, POSTs each message's `{"url": U}` job to U."""

import gust
from gust import log, outbound


@gust.http
def handle(request: gust.Request) -> gust.Response:
    target = request.query["url"]
    timeout = float(request.query.get("timeout", "10"))
    try:
        if request.query.get("method") == "GET":
            r = outbound.get(target, timeout=timeout)
        else:
            r = outbound.post(target, "from py", headers={"x-from": "py"}, timeout=timeout)
    except outbound.Denied as e:
        return gust.Response(f"denied: {e}", 403)
    except outbound.Timeout as e:
        return gust.Response(f"timeout: {e}", 504)
    except outbound.OutboundError as e:
        return gust.Response(f"failed: {e}", 502)
    return f"{r.status} {r.header('x-upstream')} {r.text()}"


@gust.event
def worker(event: gust.Event) -> None:
    job = event.json()
    r = outbound.post(job["url"], json={"job": "hook"})
    log.info(f"hook answered {r.status}: {r.text()}")
"#,
    );
    app
}

/// JS `fetch` and Python `gust.outbound` reach a destination their
/// `outbound_http` allows, from an HTTP handler (and in Python from a queue
/// worker); a destination not allowed fails with a clear error, is logged,
/// and is never connected to.
#[test]
fn js_fetch_and_python_outbound_reach_only_allowed_destinations() {
    let (allowed, seen) = tiny_server();
    let (forbidden, forbidden_seen) = tiny_server();
    let app = outbound_app(allowed);
    let host = up(app.path(), &[]);
    let call = |lang: &str, target: &str| {
        get(
            &format!("{}/{lang}?url=http://{target}/hook?from={lang}", host.url),
            &[],
        )
    };

    let r = call("js", &allowed.to_string());
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "200 tiny got POST /hook?from=js from js"),
        "{}",
        host.stderr()
    );
    let r = call("py", &allowed.to_string());
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "200 tiny got POST /hook?from=py from py"),
        "{}",
        host.stderr()
    );

    // GET, and a call's own timeout (`outbound.Timeout`).
    let py = |query: &str| get(&format!("{}/py?{query}", host.url), &[]);
    let r = py(&format!("method=GET&url=http://{allowed}/plain?x=1"));
    assert_eq!(r.body, "200 tiny got GET /plain?x=1 ", "{r:?}");
    let r = py(&format!("method=GET&timeout=0.5&url=http://{allowed}/slow"));
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        r.body.starts_with(&format!(
            "timeout: outbound HTTP to http://{allowed}/slow timed out"
        )),
        "{}",
        r.body
    );

    // Not allowed: Python raises `outbound.Denied` naming the fix; JS's
    // fetch rejects; the host logs the refusal and the rules for both.
    let r = call("py", &forbidden.to_string());
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body.starts_with(&format!(
            "denied: outbound HTTP to http://{forbidden}/hook was denied"
        )) && r.body.contains("`outbound_http` in gust.toml"),
        "{}",
        r.body
    );
    let r = call("js", &forbidden.to_string());
    assert_eq!(
        r.status,
        502,
        "{r:?}\n{}\n{}",
        function_logs(app.path(), "js"),
        host.stderr()
    );
    assert!(r.body.starts_with("fetch failed: TypeError"), "{}", r.body);
    for function in ["js", "py"] {
        let mut logs = String::new();
        let logged = eventually(Duration::from_secs(10), || {
            logs = function_logs(app.path(), function);
            logs.contains(&format!(
                "outbound HTTP denied: POST http://{forbidden}/hook"
            )) && logs.contains(&format!("`outbound_http` allows only http://{allowed}"))
        });
        assert!(logged, "{function}: no denial logged:\n{logs}");
    }
    assert!(
        forbidden_seen.lock().unwrap().is_empty(),
        "a denied destination was reached"
    );

    // Queue workers call out too: Python blocking, JS with an async
    // `handle` awaiting fetch.
    for (lang, sent) in [("py", r#"{"job": "hook"}"#), ("js", r#"{"job":"hook"}"#)] {
        let job = format!(r#"{{"url":"http://{allowed}/from-{lang}-worker"}}"#);
        let queue = format!("{lang}-hooks");
        let (code, _, err) = gust(&["queue", "send", &queue, "--data", &job], app.path());
        assert_eq!(code, 0, "gust queue send: {err}");
        let expected = format!("POST /from-{lang}-worker {sent}");
        let mut logs = String::new();
        let called = eventually(Duration::from_secs(30), || {
            logs = function_logs(app.path(), &format!("{lang}-worker"));
            logs.contains(&format!("hook answered 200: got {expected}"))
        });
        assert!(
            called,
            "{lang}: the worker's call was not made; logs:\n{logs}"
        );
        assert!(
            seen.lock().unwrap().contains(&expected),
            "{:?}",
            seen.lock().unwrap()
        );
    }

    // An async handler's rejection settles like a thrown error: a
    // `PermanentError` goes straight to the dead letters.
    let (code, _, err) = gust(&["queue", "send", "js-hooks", "--data", "{}"], app.path());
    assert_eq!(code, 0, "gust queue send: {err}");
    let mut dead = String::new();
    let dead_lettered = eventually(Duration::from_secs(30), || {
        dead = gust(&["queue", "dlq", "list", "js-hooks"], app.path()).1;
        dead.contains("a hook job needs a url")
    });
    assert!(dead_lettered, "no dead letter; dlq:\n{dead}");
}
