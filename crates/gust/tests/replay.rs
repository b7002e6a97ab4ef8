//! End-to-end: `gust replay`. An event invocation's input is kept, so
//! `gust replay <function> --invocation <id>` re-runs it against the
//! current version of the function and shows the new outcome beside the
//! recorded one; `gust replay <function> --stream S --from N --to M`
//! re-feeds a range of a stream without moving the consumer's checkpoint.
//! Replayed events carry the `gust-replay` extension, which the probe
//! function (`tests/guests/event-probe`) writes into its log line.
//!
//! The probe fails for good on data containing `gated` while kv store
//! `gate` has no key `hits`; the test opens the gate through an HTTP
//! function between the failure and the replay (the "fix" a replay
//! verifies).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const MANIFEST: &str = r#"
[app]
name = "replay"
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
retry = { strategy = "fixed", max_attempts = 1, min = "10ms", max = "10ms" }
[[function]]
name = "on-stream"
source = "probe.wasm"
trigger = { stream = { stream = "telemetry", start = "earliest" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
[[function]]
name = "open"
source = "misbehave.wasm"
trigger = { http = { route = "/open/{*rest}", auth = "anonymous" } }
bindings = { store = { kv = "gate" } }
"#;

/// `GET /_gust/<path>` with the admin key, as JSON.
fn admin(host: &Running, dir: &Path, path: &str) -> serde_json::Value {
    let key = admin_key(dir);
    let r = get(
        &format!("{}/_gust/{path}", host.url),
        &[("x-gust-key", &key)],
    );
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// The recent invocations of `function`, newest first.
fn invocations(host: &Running, dir: &Path, function: &str) -> Vec<serde_json::Value> {
    let list = admin(
        host,
        dir,
        &format!("invocations?function={function}&limit=100"),
    );
    list["invocations"].as_array().cloned().unwrap_or_default()
}

/// The test app, up with `flags` (quiet, no watching).
fn start(flags: &[&str]) -> (TestApp, Running) {
    let app = TestApp::new(MANIFEST);
    app.add_component("probe.wasm", &guest("event-probe"));
    app.add_component("misbehave.wasm", &guest("misbehave"));
    let mut args = vec!["--quiet", "--no-watch"];
    args.extend_from_slice(flags);
    let host = up(app.path(), &args);
    (app, host)
}

/// The newest invocation of `function` that `wanted` accepts, once there
/// is one (up to 20 s).
fn newest_invocation(
    host: &Running,
    dir: &Path,
    function: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut found = None;
    eventually(Duration::from_secs(20), || {
        found = invocations(host, dir, function).into_iter().find(&wanted);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no such invocation of {function}"))
}

/// How many times `function` logged `handled <data> ` (a replay too).
fn handled(dir: &Path, function: &str, data: &str) -> usize {
    function_logs(dir, function)
        .lines()
        .filter(|l| l.contains(&format!("handled {data} #")))
        .count()
}

/// The checkpoint of consumer `on-stream` on each partition of `telemetry`.
fn checkpoints(host: &Running, dir: &Path) -> Vec<serde_json::Value> {
    let stats = admin(host, dir, "stats");
    let streams = stats["streams"].as_array().cloned().unwrap_or_default();
    let ours = streams
        .iter()
        .find(|s| s["function"] == "on-stream")
        .unwrap_or_else(|| panic!("no on-stream in {stats}"));
    ours["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["checkpoint"].clone())
        .collect()
}

#[test]
fn replays_a_recorded_invocation_and_a_stream_range() {
    let (app, host) = start(&["--replay-max-age", "10m"]);
    let dir = app.path();

    // 1. A job that fails for good while the gate is closed.
    let (code, out, err) = gust(&["queue", "send", "jobs", "--data", "gated-job"], dir);
    assert_eq!(code, 0, "{out}{err}");
    let failed = newest_invocation(&host, dir, "worker", |i| i["outcome"] == "failed");
    assert_eq!(failed["replayable"], true, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("the gate is closed"),
        "{failed}"
    );
    let id = failed["id"].as_str().unwrap().to_string();

    // Replaying before the fix fails the same way (exit code 1), and says so.
    let (code, out, err) = gust(&["replay", "worker", "--invocation", &id], dir);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("RECORDED") && out.contains("REPLAY"), "{out}");
    let error_row = out
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert_eq!(error_row.matches("the gate is closed").count(), 2, "{out}");

    // 2. The fix: open the gate. The replay now succeeds, beside the
    // recorded failure; the function saw the `gust-replay` extension.
    let r = get(&format!("{}/open/kv", host.url), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let short = &id[..8];
    let (code, out, err) = gust(&["replay", "worker", "--invocation", short], dir);
    assert_eq!(code, 0, "{out}{err}");
    let outcome_row = out
        .lines()
        .find(|l| l.starts_with("outcome"))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = outcome_row.split_whitespace().collect();
    assert_eq!(cells, ["outcome", "failed", "ok"], "{out}");
    assert!(
        out.contains(&format!(
            "handled gated-job #1 attempt 1 source /gust/queue/jobs replay {id}"
        )),
        "the replay's own log line is shown:\n{out}"
    );
    let (code, out, err) = gust(&["replay", "worker", "--invocation", &id, "--json"], dir);
    assert_eq!(code, 0, "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["replayed"], id.as_str());
    assert_eq!(answer["recorded"]["invocation"]["outcome"], "failed");
    assert_eq!(answer["replay"]["invocation"]["outcome"], "ok");
    let recorded_logs = answer["recorded"]["logs"].to_string();
    assert!(
        recorded_logs.contains("failed (not retryable): the gate is closed"),
        "the recorded failure's log line belongs to its invocation: {answer}"
    );
    let new_id = answer["replay"]["invocation"]["id"].as_str().unwrap();
    assert_ne!(new_id, id, "a replay is a new invocation");
    let logs = answer["replay"]["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .contains("handled gated-job #2")),
        "{answer}"
    );
    // Nothing was dead-lettered or retried by the replays.
    let (code, out, _) = gust(&["queue", "dlq", "list", "jobs"], dir);
    assert_eq!(code, 0);
    assert!(out.starts_with("jobs-deadletter: 1 messages"), "{out}");

    // Bad asks get clear errors.
    let (code, _, err) = gust(&["replay", "worker", "--invocation", "ffffffffffff"], dir);
    assert_eq!(code, 1);
    assert!(err.contains("no input is kept for invocation"), "{err}");
    let (code, _, err) = gust(&["replay", "open", "--invocation", &id], dir);
    assert_eq!(code, 1);
    assert!(err.contains("is an HTTP function"), "{err}");
    let (code, _, err) = gust(&["replay", "on-stream", "--invocation", &id], dir);
    assert_eq!(code, 1);
    assert!(err.contains("was of function `worker`"), "{err}");

    // 3. A stream range: six records on one key (one partition), handled
    // once each; the checkpoint is then where the consumer left it.
    let mut partition = String::new();
    for i in 0..6 {
        let data = format!("rec-{i}");
        let (code, out, err) = gust(
            &[
                "stream",
                "append",
                "telemetry",
                "--key",
                "k",
                "--data",
                &data,
            ],
            dir,
        );
        assert_eq!(code, 0, "{out}{err}");
        partition = out
            .split_whitespace()
            .skip_while(|w| *w != "partition")
            .nth(1)
            .unwrap_or_else(|| panic!("no partition in `{out}`"))
            .trim_end_matches(',')
            .to_string();
    }
    let all_handled = eventually(Duration::from_secs(20), || {
        (0..6).all(|i| handled(dir, "on-stream", &format!("rec-{i}")) == 1)
    });
    assert!(all_handled, "{}", function_logs(dir, "on-stream"));
    let settled = eventually(Duration::from_secs(10), || {
        checkpoints(&host, dir).iter().any(|c| c == 6)
    });
    assert!(settled, "{:?}", checkpoints(&host, dir));
    let before = checkpoints(&host, dir);

    let (code, out, err) = gust(
        &[
            "replay",
            "on-stream",
            "--stream",
            "telemetry",
            "--from",
            "2",
            "--to",
            "4",
            "--partition",
            &partition,
        ],
        dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("replayed 3 records of stream `telemetry` to `on-stream`: 3 ok, 0 failed"),
        "{out}"
    );
    for i in 0..6 {
        let want = if (2..=4).contains(&i) { 2 } else { 1 };
        assert_eq!(
            handled(dir, "on-stream", &format!("rec-{i}")),
            want,
            "rec-{i}"
        );
    }
    assert!(
        function_logs(dir, "on-stream").contains(&format!("replay telemetry/{partition}/3")),
        "replayed records are marked"
    );
    assert_eq!(checkpoints(&host, dir), before, "no checkpoint moved");

    // The consumer goes on from where it was: a new record is handled once,
    // and the replayed ones are not delivered again.
    let (code, out, err) = gust(
        &[
            "stream",
            "append",
            "telemetry",
            "--key",
            "k",
            "--data",
            "rec-6",
        ],
        dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    let next = eventually(Duration::from_secs(20), || {
        handled(dir, "on-stream", "rec-6") == 1
    });
    assert!(next, "{}", function_logs(dir, "on-stream"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(handled(dir, "on-stream", "rec-3"), 2);

    // A range past the end replays nothing; a bad partition is refused.
    let (code, out, err) = gust(
        &[
            "replay",
            "on-stream",
            "--stream",
            "telemetry",
            "--from",
            "100",
        ],
        dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("replayed 0 records"), "{out}");
    let (code, _, err) = gust(
        &[
            "replay",
            "on-stream",
            "--stream",
            "telemetry",
            "--from",
            "0",
            "--partition",
            "999",
        ],
        dir,
    );
    assert_eq!(code, 1);
    assert!(err.contains("partitions"), "{err}");
    let (code, _, err) = gust(
        &["replay", "on-stream", "--stream", "nope", "--from", "0"],
        dir,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no function of this app reads or writes a stream named `nope`"),
        "{err}"
    );
}

#[test]
fn a_zero_byte_limit_keeps_no_input() {
    let (app, host) = start(&["--replay-max-bytes", "0"]);
    let dir = app.path();
    let (code, out, err) = gust(&["queue", "send", "jobs", "--data", "plain"], dir);
    assert_eq!(code, 0, "{out}{err}");
    let done = newest_invocation(&host, dir, "worker", |_| true);
    assert_eq!(done["replayable"], false, "{done}");
    let (code, _, err) = gust(
        &[
            "replay",
            "worker",
            "--invocation",
            done["id"].as_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(code, 1);
    assert!(err.contains("no input is kept"), "{err}");
}
