//! End-to-end: `examples/event-sourcing` under a real `gust up`, driven over
//! HTTP and the CLI: task commands append events to the stream
//! `task-events` and publish them to the topic `tasks`; three subscribers
//! keep the task documents, the per-user model and the high-priority report.
//! Then the per-user model is rebuilt from the event log alone (the replay
//! projector is deployed afterwards and starts from the earliest record) and
//! must equal the incrementally maintained one; a poison event ends in the
//! dead letters listed by `gust queue dlq list`.

mod common;
mod engine_probe;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use engine_probe::NatsCleanup;
use serde_json::{Value, json};

/// The example's manifest with sources pointing back at the example's
/// crates; without the replay projector when `with_replay` is false.
fn manifest(with_replay: bool) -> String {
    let example = repo().join("examples/event-sourcing");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    let manifest = manifest.replace("source = \"functions/", &functions);
    if with_replay {
        return manifest;
    }
    let blocks: Vec<&str> = manifest.split("[[function]]").collect();
    let kept: Vec<&str> = blocks
        .iter()
        .copied()
        .filter(|b| !b.contains("name = \"replay-users\""))
        .collect();
    assert_eq!(kept.len() + 1, blocks.len(), "replay-users not found");
    kept.join("[[function]]")
}

fn post(url: &str, path: &str, body: &Value) -> Reply {
    send(
        "POST",
        &format!("{url}{path}"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// The expected per-user model, computed by the test from its commands.
#[derive(Default)]
struct Expected {
    open: BTreeMap<String, BTreeSet<String>>,
    completed: BTreeMap<String, BTreeSet<String>>,
    assignee: BTreeMap<String, String>,
    versions: BTreeMap<String, u64>,
    high_completed: BTreeSet<String>,
    /// The kinds of each task's events, in order.
    kinds: BTreeMap<String, Vec<&'static str>>,
}

impl Expected {
    fn create(&mut self, url: &str, title: &str, priority: &str, assignee: Option<&str>) -> String {
        let mut body = json!({ "title": title, "priority": priority });
        if let Some(a) = assignee {
            body["assignee"] = json!(a);
        }
        let r = post(url, "/api/tasks", &body);
        assert_eq!(r.status, 201, "{r:?}");
        let task = r.json()["task"].as_str().unwrap().to_string();
        assert_eq!(r.json()["seq"], 1);
        assert_eq!(r.json()["kind"], "created");
        assert_eq!(
            r.header("location"),
            Some(format!("/api/tasks/{task}").as_str())
        );
        if let Some(a) = assignee {
            self.open.entry(a.into()).or_default().insert(task.clone());
            self.assignee.insert(task.clone(), a.into());
        }
        self.versions.insert(task.clone(), 1);
        self.kinds.insert(task.clone(), vec!["created"]);
        task
    }

    fn assign(&mut self, url: &str, task: &str, to: &str) {
        let r = post(
            url,
            &format!("/api/tasks/{task}/assign"),
            &json!({ "assignee": to }),
        );
        assert_eq!(r.status, 200, "{r:?}");
        if let Some(previous) = self.assignee.insert(task.into(), to.into()) {
            self.open.get_mut(&previous).unwrap().remove(task);
        }
        self.open.entry(to.into()).or_default().insert(task.into());
        *self.versions.get_mut(task).unwrap() += 1;
        assert_eq!(r.json()["seq"], self.versions[task]);
        self.kinds.get_mut(task).unwrap().push("assigned");
    }

    fn complete(&mut self, url: &str, task: &str, by: Option<&str>, high: bool) {
        let body = by.map(|b| json!({ "by": b })).unwrap_or(Value::Null);
        let r = if by.is_some() {
            post(url, &format!("/api/tasks/{task}/complete"), &body)
        } else {
            send(
                "POST",
                &format!("{url}/api/tasks/{task}/complete"),
                &[],
                b"",
            )
        };
        assert_eq!(r.status, 200, "{r:?}");
        let assignee = self.assignee[task].clone();
        self.open.get_mut(&assignee).unwrap().remove(task);
        let by = by.unwrap_or(&assignee).to_string();
        assert_eq!(r.json()["by"], by.as_str());
        self.completed.entry(by).or_default().insert(task.into());
        *self.versions.get_mut(task).unwrap() += 1;
        self.kinds.get_mut(task).unwrap().push("completed");
        if high {
            self.high_completed.insert(task.into());
        }
    }

    /// `{user: (open, completed)}` as the test expects it.
    fn users(&self) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
        let names: BTreeSet<&String> = self.open.keys().chain(self.completed.keys()).collect();
        names
            .into_iter()
            .map(|n| {
                (
                    n.clone(),
                    (
                        self.open.get(n).cloned().unwrap_or_default(),
                        self.completed.get(n).cloned().unwrap_or_default(),
                    ),
                )
            })
            .collect()
    }
}

/// `{user: (open, completed)}` as the read model shows it.
fn seen_users(page: &Value) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let ids = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert_eq!(u["open_count"], u["open"].as_object().unwrap().len());
            (
                u["user"].as_str().unwrap().to_string(),
                (ids(&u["open"]), ids(&u["completed"])),
            )
        })
        .collect()
}

fn users(url: &str, model: &str) -> Value {
    let r = get(&format!("{url}/api/users?model={model}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

#[test]
fn task_events_feed_the_read_models_and_the_log_rebuilds_them() {
    let started = Instant::now();
    let app = TestApp::new(&manifest(false));
    scenario(&app, &manifest, &[]);
    eprintln!("done after {:?}", started.elapsed());
}

/// Drives the example in `app` (its manifest from `manifest(with_replay)`)
/// under `gust up` with `flags`: commands, read models, a poison event,
/// then a restart with the replay projector. Returns what the commands did.
fn scenario(app: &TestApp, manifest: &dyn Fn(bool) -> String, flags: &[&str]) -> Expected {
    let started = Instant::now();
    let flags: Vec<&str> = ["--quiet", "--no-watch"]
        .iter()
        .chain(flags)
        .copied()
        .collect();
    let mut host = up(app.path(), &flags);
    let url = host.url.clone();
    let url = url.as_str();
    eprintln!("gust up ready after {:?}", started.elapsed());

    // Commands validate their input and the task's state.
    let r = send("POST", &format!("{url}/api/tasks"), &[], b"{not json");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("expected JSON")
    );
    let r = post(url, "/api/tasks", &json!({ "title": " " }));
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["error"], "title must be 1 to 200 characters");
    let r = post(
        url,
        "/api/tasks",
        &json!({ "title": "x", "priority": "urgent" }),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = post(
        url,
        "/api/tasks/t-0000000000000000/assign",
        &json!({ "assignee": "ada" }),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"], "no task `t-0000000000000000`");

    let mut x = Expected::default();
    let report = x.create(url, "Write the quarterly report", "high", Some("ada"));
    let review = x.create(url, "Review pull request 42", "normal", None);
    let r = post(url, &format!("/api/tasks/{review}/complete"), &json!({}));
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        r.json()["error"],
        format!("task `{review}` is not assigned to anyone")
    );
    let r = post(
        url,
        &format!("/api/tasks/{review}/assign"),
        &json!({ "assignee": "Not A User" }),
    );
    assert_eq!(r.status, 422, "{r:?}");
    x.assign(url, &review, "grace");
    x.assign(url, &review, "ada");
    x.complete(url, &report, None, true);
    let r = post(url, &format!("/api/tasks/{report}/complete"), &json!({}));
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        r.json()["error"],
        format!("task `{report}` is already completed")
    );
    let r = post(
        url,
        &format!("/api/tasks/{report}/assign"),
        &json!({ "assignee": "grace" }),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let outage = x.create(url, "Fix the outage", "high", Some("grace"));
    x.complete(url, &outage, Some("linus"), true);
    // A burst, so deliveries overtake each other and subscribers retry.
    let people = ["ada", "grace", "linus"];
    let mut burst = Vec::new();
    for i in 0..12 {
        let priority = ["low", "normal", "high"][i % 3];
        let task = x.create(url, &format!("Chore {i}"), priority, Some(people[i % 3]));
        burst.push((task, priority));
    }
    for (i, (task, priority)) in burst.iter().enumerate() {
        if i % 2 == 0 {
            x.assign(url, task, people[(i + 1) % 3]);
        }
        if i % 4 != 3 {
            x.complete(url, task, None, *priority == "high");
        }
    }
    eprintln!(
        "{} commands done after {:?}",
        x.versions.values().sum::<u64>(),
        started.elapsed()
    );

    // The task documents catch up with every event.
    let t0 = Instant::now();
    for (task, version) in &x.versions {
        let mut last = None;
        let ok = eventually(Duration::from_secs(20), || {
            let r = get(&format!("{url}/api/tasks/{task}"), &[]);
            let done = r.status == 200 && r.json()["version"].as_u64() == Some(*version);
            last = Some(r);
            done
        });
        assert!(ok, "task {task} never reached version {version}: {last:?}");
    }
    let doc = get(&format!("{url}/api/tasks/{review}"), &[]).json();
    assert_eq!(doc["status"], "assigned");
    assert_eq!(doc["assignee"], "ada");
    let kinds: Vec<&str> = doc["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "assigned", "assigned"]);
    let doc = get(&format!("{url}/api/tasks/{outage}"), &[]).json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["completed_by"], "linus");
    assert_eq!(doc["assignee"], "grace");

    // The per-user model matches what the commands did.
    let expected = x.users();
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(20), || {
        last = users(url, "live");
        seen_users(&last) == expected
    });
    assert!(
        ok,
        "per-user model {:?} != expected {expected:?}",
        seen_users(&last)
    );
    let ada = get(&format!("{url}/api/users/ada"), &[]).json();
    assert_eq!(ada["open"][&review]["title"], "Review pull request 42");
    assert_eq!(ada["completed"][&report]["priority"], "high");
    assert!(ada["completed"][&report]["completed_at"].as_str().is_some());
    assert_eq!(get(&format!("{url}/api/users/nobody"), &[]).status, 404);
    assert_eq!(get(&format!("{url}/api/users?model=old"), &[]).status, 400);

    // The filtered subscriber saw only high-priority completions.
    let ok = eventually(Duration::from_secs(20), || {
        let r = get(&format!("{url}/api/reports/high-priority"), &[]).json();
        let tasks: BTreeSet<String> = r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["task"].as_str().unwrap().to_string())
            .collect();
        tasks == x.high_completed
    });
    assert!(ok, "high-priority report != {:?}", x.high_completed);
    eprintln!("read models caught up after {:?}", t0.elapsed());
    let live = users(url, "live");

    // A poison event (published by hand) is dead-lettered by the
    // subscribers and listed by the CLI with the reason.
    let (code, out, err) = gust(
        &[
            "events",
            "publish",
            "tasks",
            "--type",
            "com.example.task.completed",
            "--subject",
            "high/t-0000000000000000",
            "--data",
            r#"{"task": "t-0000000000000000", "by": "mallory"}"#,
        ],
        app.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    for function in ["record-high-priority", "update-task", "track-users"] {
        let queue = format!("tasks--{function}");
        let mut out = String::new();
        let ok = eventually(Duration::from_secs(15), || {
            let (code, o, e) = gust(&["queue", "dlq", "list", &queue], app.path());
            assert_eq!(code, 0, "{o}{e}");
            out = o;
            out.contains("mallory")
        });
        assert!(ok, "{queue}: no dead letter: {out}");
        assert!(out.contains("not a task event"), "{out}");
        eprintln!("{}", out.trim());
    }
    // The event log holds every event.
    let (code, out, err) = gust(&["stream", "show", "task-events"], app.path());
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("{}", out.trim());

    // Rebuild: deploy the replay projector; it starts from the earliest
    // record of the log and must arrive at the same model.
    assert_eq!(host.stop(), Some(0), "{}", host.stderr());
    app.write("gust.toml", &manifest(true));
    let t1 = Instant::now();
    let host = up(app.path(), &flags);
    let url = host.url.as_str();
    assert_eq!(
        users(url, "live"),
        live,
        "the live model changed on restart"
    );
    let mut replay = Value::Null;
    let ok = eventually(Duration::from_secs(30), || {
        replay = users(url, "replay");
        replay == live
    });
    assert!(
        ok,
        "rebuilt model differs:\nlive   {live:#}\nreplay {replay:#}"
    );
    eprintln!("rebuilt from the log after {:?}", t1.elapsed());
    x
}

/// The same scenario with the stream, the topic and its subscriber queues
/// on NATS JetStream (`--nats`); then the event log is read back from the
/// stream's JetStream streams (one per partition) with async-nats.
#[test]
fn on_nats_the_event_log_is_in_jetstream() {
    let started = Instant::now();
    let name = engine_probe::unique_app("event-sourcing");
    let renamed = |with_replay: bool| engine_probe::rename_app(&manifest(with_replay), &name);
    let app = TestApp::new(&renamed(false));
    let nats = NatsCleanup::new(&name);
    let x = scenario(&app, &renamed, &["--nats", engine_probe::NATS]);
    let data = app.path().join(".gust/data");
    for file in ["streams.redb", "queues.redb"] {
        assert!(!data.join(file).exists(), "{file} on the embedded engine");
    }
    let streams = nats.streams();
    eprintln!("{name} on JetStream: {streams:?}");

    // Every event of every task, in the partition of its key, in order.
    let mut total = 0;
    let mut seen: BTreeMap<String, (u32, Vec<String>)> = BTreeMap::new();
    for p in 0..4 {
        let stream = engine_probe::nats_partition_stream(&name, "task-events", p);
        assert!(streams.contains(&stream), "{stream} not in {streams:?}");
        let records = engine_probe::nats_records(&stream).unwrap();
        eprintln!("{stream}: {} records", records.len());
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1, "{stream}: offsets are dense");
            assert!(r.subject.ends_with(&format!(".s.task-events.{p}")), "{r:?}");
            let event: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(event["task"], r.key.as_str(), "{event}");
            let (partition, kinds) = seen.entry(r.key.clone()).or_insert((p, Vec::new()));
            assert_eq!(*partition, p, "{}: events in two partitions", r.key);
            kinds.push(event["kind"].as_str().unwrap().to_string());
            assert_eq!(event["seq"], kinds.len(), "{event}");
            total += 1;
        }
    }
    let expected: BTreeMap<String, Vec<String>> = x
        .kinds
        .iter()
        .map(|(t, k)| (t.clone(), k.iter().map(|s| s.to_string()).collect()))
        .collect();
    let seen: BTreeMap<String, Vec<String>> = seen.into_iter().map(|(t, (_, k))| (t, k)).collect();
    assert_eq!(seen, expected);
    assert_eq!(total, x.versions.values().sum::<u64>());

    // The topic is a JetStream stream; each subscriber's dead letters are a
    // queue holding the poison event.
    let topic = engine_probe::nats_topic_stream(&name, "tasks");
    assert!(streams.contains(&topic), "{topic} not in {streams:?}");
    for function in ["record-high-priority", "update-task", "track-users"] {
        let queue = format!("tasks--{function}-deadletter");
        let stream = engine_probe::nats_queue_stream(&name, &queue);
        assert!(streams.contains(&stream), "{stream} not in {streams:?}");
        let payloads = engine_probe::nats_payloads(&stream);
        assert_eq!(payloads.len(), 1, "{stream}");
        let poison: Value = serde_json::from_slice(&payloads[0]).unwrap();
        assert_eq!(poison["by"], "mallory", "{stream}: {poison}");
    }
    drop(nats);
    eprintln!(
        "{total} events in JetStream; done after {:?}",
        started.elapsed()
    );
}
