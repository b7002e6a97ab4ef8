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
//! one core, a Python build ~15 s).

mod common;

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
