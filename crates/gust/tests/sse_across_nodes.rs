//! End-to-end: server-sent events across nodes. Two `gust up --nats`
//! processes serve the same app (same name, same NATS); an event published
//! on either node reaches the `[[sse]]` clients of both, once each, and a
//! client reconnecting to the other node with `Last-Event-ID` gets only what
//! it had not seen.

mod common;
mod engine_probe;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use engine_probe::{NATS, NatsCleanup, unique_app};

/// How long any one expected frame may take to arrive.
const WAIT: Duration = Duration::from_secs(20);

fn manifest(name: &str) -> String {
    format!(
        r#"
[app]
name = "{name}"
[[function]]
name = "hello"
source = "raw.wasm"
trigger = {{ http = {{ route = "/hello", auth = "anonymous" }} }}
[[sse]]
route = "/jobs/{{id}}/events"
topic = "job-events"
subject = "{{id}}"
auth = "anonymous"
"#
    )
}

/// One `text/event-stream` frame.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: String,
    event: String,
    data: String,
}

/// An open event stream read on a thread; frames come through `frames`.
struct Client {
    frames: mpsc::Receiver<Frame>,
}

impl Client {
    /// Opens `url` (with `Last-Event-ID` when given) and returns once the
    /// host answered, that is once the stream is subscribed.
    fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let mut request = agent.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.call().expect("open the event stream");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut response = response;
            let reader = BufReader::new(response.body_mut().as_reader());
            let mut current = Frame {
                id: String::new(),
                event: String::new(),
                data: String::new(),
            };
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if !current.event.is_empty() && tx.send(current.clone()).is_err() {
                        break;
                    }
                    current.id.clear();
                    current.event.clear();
                    current.data.clear();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    current.id = v.into();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    current.event = v.into();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    current.data.push_str(v);
                }
            }
        });
        Self { frames }
    }

    /// The frames received until one with id `last` (each within [`WAIT`]).
    fn until(&self, last: &str) -> Vec<Frame> {
        let mut got = Vec::new();
        loop {
            let frame = self.frames.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!("no frame `{last}` within {WAIT:?}; got so far: {got:#?}")
            });
            let done = frame.id == last;
            got.push(frame);
            if done {
                return got;
            }
        }
    }
}

/// Publishes one structured CloudEvent to `job-events` on `node`.
fn publish(node: &Running, dir: &std::path::Path, id: &str, subject: &str, data: &str) {
    let key = keys(dir)["host"].as_str().unwrap().to_string();
    let event = format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/jobs","type":"job.progress","subject":"{subject}","datacontenttype":"text/plain","data":"{data}"}}"#
    );
    let r = send(
        "POST",
        &format!("{}/_gust/topics/job-events", node.url),
        &[
            ("x-gust-key", key.as_str()),
            ("content-type", "application/cloudevents+json"),
        ],
        event.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
}

fn ids(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn events_published_on_one_node_reach_clients_of_the_other() {
    let name = unique_app("sse-nodes");
    let _cleanup = NatsCleanup::new(&name);
    let raw = guest("raw-wasip2");
    let apps: Vec<TestApp> = (0..2)
        .map(|_| {
            let app = TestApp::new(&manifest(&name));
            app.add_component("raw.wasm", &raw);
            app
        })
        .collect();
    let starting: Vec<_> = apps
        .iter()
        .map(|app| {
            let dir = app.path().to_path_buf();
            std::thread::spawn(move || up(&dir, &["--quiet", "--nats", NATS]))
        })
        .collect();
    let nodes: Vec<Running> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    let (dir_a, dir_b) = (apps[0].path(), apps[1].path());

    // A client on each node, connected before anything is published.
    let on_a = Client::open(&format!("{}/jobs/j1/events", a.url), None);
    let on_b = Client::open(&format!("{}/jobs/j1/events", b.url), None);

    publish(a, dir_a, "p1", "j1", "from-a");
    publish(a, dir_a, "other", "j2", "not-for-j1");
    publish(b, dir_b, "p2", "j1", "from-b");
    publish(a, dir_a, "p3", "j1", "again-from-a");

    // Node B's client sees node A's events, in A's order, and B's own.
    let mut all_b = on_b.until("p3");
    if !all_b.iter().any(|f| f.id == "p2") {
        // p2 (local to B) may come after p3 (from A): read on until it.
        all_b.extend(on_b.until("p2"));
    }
    let mut sorted = ids(&all_b);
    sorted.sort();
    assert_eq!(sorted, ["p1", "p2", "p3"], "{all_b:#?}");
    let from_a: Vec<&str> = ids(&all_b).into_iter().filter(|id| *id != "p2").collect();
    assert_eq!(from_a, ["p1", "p3"]);
    let p1 = all_b.iter().find(|f| f.id == "p1").unwrap();
    assert_eq!(
        (p1.event.as_str(), p1.data.as_str()),
        ("job.progress", "from-a")
    );

    // Node A's client sees B's event too, and each event once: a last event
    // published on A comes after every frame already on its way.
    let mut all_a = on_a.until("p2");
    if !all_a.iter().any(|f| f.id == "p3") {
        all_a.extend(on_a.until("p3"));
    }
    publish(a, dir_a, "fin", "j1", "end");
    all_a.extend(on_a.until("fin"));
    all_b.extend(on_b.until("fin"));
    for (node, all) in [("A", &all_a), ("B", &all_b)] {
        let mut sorted = ids(all);
        sorted.sort();
        assert_eq!(sorted, ["fin", "p1", "p2", "p3"], "node {node}: {all:#?}");
    }

    // A client that saw p1 on node A resumes on node B: node B recorded
    // node A's events (in the order its own client saw them), so it replays
    // only what came after p1 there.
    let after_p1: Vec<&str> = ids(&all_b)
        .into_iter()
        .skip_while(|id| *id != "p1")
        .skip(1)
        .collect();
    let resumed = Client::open(&format!("{}/jobs/j1/events", b.url), Some("p1"));
    let replay = resumed.until("fin");
    assert_eq!(ids(&replay), after_p1, "{replay:#?}");

    // The host still answers plain HTTP.
    assert_eq!(get(&format!("{}/hello", b.url), &[]).status, 200);
}
