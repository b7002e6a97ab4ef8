//! Server-sent events from topics (`[[sse]]` in `gust.toml`).
//!
//! The [`SseHub`] keeps, per topic that some `[[sse]]` streams, an
//! in-process broadcast fed by every event accepted for the topic (HTTP
//! ingress and function publishes), plus the recent events of each subject
//! (the last [`REPLAY_PER_SUBJECT`] within [`REPLAY_FOR`]) so a client that
//! connects after an event was published still sees it. What a topic keeps
//! is also bounded by memory ([`REPLAY_MAX_BYTES`]) and subjects
//! ([`MAX_SUBJECTS`]): past either, its oldest events are forgotten first.
//!
//! `GET <route>` answers `text/event-stream`: one frame per matching event
//! (`id:` = event id, `event:` = event type, `data:` = event data, one
//! `data:` line per line), a `: heartbeat` comment every [`HEARTBEAT`], and
//! the stream ends when the client goes away or the host shuts down. A
//! reconnecting client's `Last-Event-ID` skips what it already saw (see
//! [`last_event_id`] for how ids are written and read back; a header that
//! names no event replays every recent event, with a comment saying why).
//!
//! A hub made [`SseHub::with_broadcast`] also sends the events it records
//! to the hubs of the app on other nodes and records theirs (see
//! [`relay`]), so every node streams and replays every node's events.

pub mod last_event_id;
mod relay;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gust_backends::Broadcast;
use gust_events::Event;
use gust_manifest::SseRoute;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{broadcast, watch};

use crate::app::LoadedApp;
use crate::body::{self, Body};
use gust_triggers::http::{AuthFailure, authorize, presented_key};
pub use last_event_id::{LastEventId, LastEventIdError};

/// How often an idle stream gets a comment line (keeps proxies from closing it).
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Recent events kept per subject for replay.
pub const REPLAY_PER_SUBJECT: usize = 32;
/// How long an event stays available for replay.
pub const REPLAY_FOR: Duration = Duration::from_secs(600);
/// Most subjects remembered per topic (those whose events are oldest go
/// first).
pub const MAX_SUBJECTS: usize = 10_000;
/// Most memory the recent events of one topic hold (the oldest go first).
pub const REPLAY_MAX_BYTES: usize = 8 << 20;
/// Events buffered per topic for slow clients before they skip some.
const CHANNEL: usize = 1024;

/// Live events and recent history of the topics that `[[sse]]` routes stream.
/// One per host; it outlives reloads, so open streams keep running.
pub struct SseHub {
    state: Arc<Mutex<HubState>>,
    closed: watch::Sender<bool>,
    relay: Option<relay::Relay>,
}

#[derive(Default)]
struct HubState {
    watched: HashSet<String>,
    topics: HashMap<String, TopicState>,
}

struct TopicState {
    live: broadcast::Sender<Arc<Event>>,
    /// Recent events by subject (`None`: events without a subject).
    by_subject: HashMap<Option<String>, VecDeque<Recent>>,
    /// Recent events of every subject, for streams without a subject filter.
    all: VecDeque<Recent>,
    /// Every event recorded within [`REPLAY_FOR`], oldest first: what ages
    /// out, and what goes first past the bounds.
    kept: VecDeque<Recent>,
    /// The memory `kept` holds (see [`weight`]).
    bytes: usize,
}

struct Recent {
    at: Instant,
    event: Arc<Event>,
}

/// The memory one kept event holds: the event and its slots in `kept`, in
/// its subject's queue and (counted generously) in the subject map.
fn weight(event: &Event) -> usize {
    event.heap_size()
        + std::mem::size_of::<Event>()
        + 2 * std::mem::size_of::<Recent>()
        + event.subject.as_ref().map_or(0, String::len)
        + 32
}

impl Default for SseHub {
    fn default() -> Self {
        Self::new()
    }
}

impl SseHub {
    /// A hub that watches no topic yet and streams this node's events only.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            closed: watch::channel(false).0,
            relay: None,
        }
    }

    /// A hub that also exchanges events with the app's hubs on other nodes
    /// through `broadcast` (the app's [`Broadcast`] provider; in-process
    /// for embedded backends, where it changes nothing).
    pub fn with_broadcast(broadcast: Arc<dyn Broadcast>) -> Self {
        Self {
            relay: Some(relay::Relay::new(broadcast)),
            ..Self::new()
        }
    }

    /// Sets the topics to record (those of the app's `[[sse]]` routes).
    /// Topics no longer listed are forgotten once no stream reads them.
    /// With a broadcast, listens to other nodes' events of these topics
    /// (see [`SseHub::ready`]).
    pub fn watch_topics<'a>(&self, topics: impl IntoIterator<Item = &'a str>) {
        let watched: Vec<String> = {
            let mut state = self.state.lock().expect("sse lock");
            state.watched = topics.into_iter().map(str::to_string).collect();
            let HubState { watched, topics } = &mut *state;
            topics.retain(|name, t| watched.contains(name) || t.live.receiver_count() > 0);
            watched.iter().cloned().collect()
        };
        if let Some(relay) = &self.relay {
            let state = self.state.clone();
            let deliver: relay::Deliver = Arc::new(move |topic: &str, event: Event| {
                record(&state, topic, &[event]);
            });
            relay.listen(&watched, &deliver);
        }
    }

    /// Waits until events other nodes publish on the watched topics reach
    /// this hub (at once without a broadcast; bounded otherwise).
    pub async fn ready(&self) {
        if let Some(relay) = &self.relay {
            relay.ready().await;
        }
    }

    /// How many recent events the hub keeps for replay, and the memory they
    /// hold, over every topic.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state.lock().expect("sse lock");
        state
            .topics
            .values()
            .map(TopicState::usage)
            .fold((0, 0), |(n, b), (tn, tb)| (n + tn, b + tb))
    }

    /// Whether events of `topic` are recorded.
    pub fn watches(&self, topic: &str) -> bool {
        self.state.lock().expect("sse lock").watched.contains(topic)
    }

    /// Records events accepted for `topic` on this node and sends them to
    /// open streams, here and (with a broadcast) on the other nodes. An
    /// event already recorded (same `source` and `id`) is not sent again.
    pub async fn publish(&self, topic: &str, events: &[Event]) {
        let recorded = record(&self.state, topic, events);
        if let Some(relay) = &self.relay
            && !recorded.is_empty()
        {
            relay.send(topic, &recorded).await;
        }
    }

    /// Opens a stream of `topic`'s events, filtered on `subject` when given:
    /// first the recent ones (after `last_event_id` when it names one of
    /// them, else all), then live ones.
    pub fn subscribe(
        &self,
        topic: &str,
        subject: Option<String>,
        last_event_id: Option<&LastEventId>,
    ) -> Subscription {
        let now = Instant::now();
        let mut state = self.state.lock().expect("sse lock");
        let t = state
            .topics
            .entry(topic.to_string())
            .or_insert_with(TopicState::new);
        let recent: Vec<Arc<Event>> = match &subject {
            Some(s) => match t.by_subject.get_mut(&Some(s.clone())) {
                Some(recent) => {
                    expire(recent, now);
                    recent.iter().map(|r| r.event.clone()).collect()
                }
                None => Vec::new(),
            },
            None => {
                expire(&mut t.all, now);
                t.all.iter().map(|r| r.event.clone()).collect()
            }
        };
        let replay = match last_event_id.and_then(|id| recent.iter().position(|e| id.is(&e.id))) {
            Some(seen) => recent[seen + 1..].to_vec(),
            None => recent,
        };
        Subscription {
            replay: replay.into(),
            live: t.live.subscribe(),
            subject,
            closed: self.closed.subscribe(),
            notice: None,
        }
    }

    /// Ends every open stream (host shutdown); later streams end at once.
    pub fn close(&self) {
        self.closed.send_replace(true);
        if let Some(relay) = &self.relay {
            relay.stop();
        }
    }
}

/// Records `events` of `topic` (when watched) and sends them to open
/// streams; returns those not recorded before.
fn record(state: &Mutex<HubState>, topic: &str, events: &[Event]) -> Vec<Arc<Event>> {
    let now = Instant::now();
    let mut state = state.lock().expect("sse lock");
    if !state.watched.contains(topic) {
        return Vec::new();
    }
    let t = state
        .topics
        .entry(topic.to_string())
        .or_insert_with(TopicState::new);
    let mut recorded = Vec::new();
    for event in events {
        let recent = t.by_subject.entry(event.subject.clone()).or_default();
        expire(recent, now);
        let seen = recent
            .iter()
            .any(|r| r.event.id == event.id && r.event.source == event.source);
        if seen {
            continue;
        }
        let event = Arc::new(event.clone());
        push(recent, now, event.clone());
        push(&mut t.all, now, event.clone());
        t.bytes += weight(&event);
        t.kept.push_back(Recent {
            at: now,
            event: event.clone(),
        });
        // No receivers is fine: the event is kept for replay.
        let _ = t.live.send(event.clone());
        recorded.push(event);
    }
    t.forget_old(now);
    recorded
}

impl TopicState {
    fn new() -> Self {
        Self {
            live: broadcast::channel(CHANNEL).0,
            by_subject: HashMap::new(),
            all: VecDeque::new(),
            kept: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Forgets the oldest events while they are older than [`REPLAY_FOR`]
    /// or the topic holds more than [`REPLAY_MAX_BYTES`] or
    /// [`MAX_SUBJECTS`]; a subject whose last event goes is forgotten too.
    fn forget_old(&mut self, now: Instant) {
        while let Some(oldest) = self.kept.front() {
            let expired = now.duration_since(oldest.at) > REPLAY_FOR;
            if !expired && self.bytes <= REPLAY_MAX_BYTES && self.by_subject.len() <= MAX_SUBJECTS {
                break;
            }
            let oldest = self.kept.pop_front().expect("a front event");
            self.bytes -= weight(&oldest.event);
            let subject = &oldest.event.subject;
            if let Some(recent) = self.by_subject.get_mut(subject) {
                // Unless the subject's own bound already pushed it out.
                if recent
                    .front()
                    .is_some_and(|r| Arc::ptr_eq(&r.event, &oldest.event))
                {
                    recent.pop_front();
                }
                if recent.is_empty() {
                    self.by_subject.remove(subject);
                }
            }
            if self
                .all
                .front()
                .is_some_and(|r| Arc::ptr_eq(&r.event, &oldest.event))
            {
                self.all.pop_front();
            }
        }
    }

    /// The events kept and the memory they hold.
    fn usage(&self) -> (usize, usize) {
        (self.kept.len(), self.bytes)
    }
}

fn expire(recent: &mut VecDeque<Recent>, now: Instant) {
    while recent
        .front()
        .is_some_and(|r| now.duration_since(r.at) > REPLAY_FOR)
    {
        recent.pop_front();
    }
}

fn push(recent: &mut VecDeque<Recent>, at: Instant, event: Arc<Event>) {
    if recent.len() == REPLAY_PER_SUBJECT {
        recent.pop_front();
    }
    recent.push_back(Recent { at, event });
}

/// One client's view of a topic: replayed events, then live ones.
pub struct Subscription {
    replay: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    subject: Option<String>,
    closed: watch::Receiver<bool>,
    /// A comment sent first (why the replay starts where it does).
    notice: Option<String>,
}

impl Subscription {
    /// The next piece of the stream: an event frame, a heartbeat comment
    /// after `heartbeat` of silence, or `None` when the stream ends.
    pub async fn next(&mut self, heartbeat: Duration) -> Option<String> {
        if *self.closed.borrow() {
            return None;
        }
        if let Some(event) = self.replay.pop_front() {
            return Some(frame(&event));
        }
        let quiet = tokio::time::sleep(heartbeat);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                biased;
                changed = self.closed.changed() => {
                    if changed.is_err() || *self.closed.borrow() {
                        return None;
                    }
                }
                received = self.live.recv() => match received {
                    Ok(event) if self.wants(&event) => return Some(frame(&event)),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Some(format!(": {n} events skipped (the client reads too slowly)\n\n"));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = &mut quiet => return Some(": heartbeat\n\n".to_string()),
            }
        }
    }

    fn wants(&self, event: &Event) -> bool {
        match &self.subject {
            Some(s) => event.subject.as_deref() == Some(s.as_str()),
            None => true,
        }
    }

    /// Adds a comment line sent right after the stream opens (one line:
    /// line breaks become spaces).
    pub fn with_notice(mut self, notice: impl std::fmt::Display) -> Self {
        self.notice = Some(notice.to_string().replace(['\r', '\n'], " "));
        self
    }

    /// The subscription as a streaming response body.
    pub fn into_body(self, heartbeat: Duration) -> Body {
        let opening = Some(match &self.notice {
            Some(notice) => format!(": connected\nretry: 3000\n\n: {notice}\n\n"),
            None => ": connected\nretry: 3000\n\n".to_string(),
        });
        let stream =
            futures::stream::unfold((self, opening), move |(mut sub, opening)| async move {
                let text = match opening {
                    Some(text) => text,
                    None => sub.next(heartbeat).await?,
                };
                let frame: Result<Frame<Bytes>, body::BoxError> =
                    Ok(Frame::data(Bytes::from(text)));
                Some((frame, (sub, None)))
            });
        BodyExt::boxed_unsync(StreamBody::new(stream))
    }
}

/// The text/event-stream frame of `event`.
pub fn frame(event: &Event) -> String {
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = format!(
        "id: {}\nevent: {}\n",
        last_event_id::wire(&event.id),
        one_line(&event.ty)
    );
    let data = String::from_utf8_lossy(&event.data);
    let data = data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Answers `req` when its path is one of the app's `[[sse]]` routes.
pub fn handle<B>(hub: &SseHub, app: &LoadedApp, req: &Request<B>) -> Option<Response<Body>> {
    let path = req.uri().path();
    let (route, params) = app
        .app
        .sse
        .iter()
        .find_map(|r| r.match_path(path).map(|p| (r, p)))?;
    Some(open(hub, app, route, &params, req))
}

fn open<B>(
    hub: &SseHub,
    app: &LoadedApp,
    route: &SseRoute,
    params: &[(String, String)],
    req: &Request<B>,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = body::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!(
                "{} is not allowed on {}; an event stream is opened with GET",
                req.method(),
                req.uri().path()
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let key = presented_key(req.headers(), req.uri().query());
    if let Err(failure) = authorize(route.auth, "", key.as_deref(), &app.keys.current()) {
        let status = match failure {
            AuthFailure::Missing => StatusCode::UNAUTHORIZED,
            AuthFailure::Denied => StatusCode::FORBIDDEN,
        };
        return body::error(status, "unauthorized", failure);
    }
    let mut response = if req.method() == Method::HEAD {
        Response::new(body::full(Bytes::new()))
    } else {
        let subject = route.subject_for(params);
        let subscription = match LastEventId::from_headers(req.headers()) {
            Ok(last) => hub.subscribe(&route.topic, subject, last.as_ref()),
            Err(e) => {
                tracing::debug!(route = %req.uri().path(), error = %e, "replaying every recent event");
                hub.subscribe(&route.topic, subject, None).with_notice(e)
            }
        };
        Response::new(subscription.into_body(HEARTBEAT))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, subject: Option<&str>, data: &str) -> Event {
        let mut e = Event::new("/test", "job.progress", data.as_bytes().to_vec());
        e.id = id.to_string();
        e.subject = subject.map(Into::into);
        e
    }

    fn hub(topic: &str) -> SseHub {
        let hub = SseHub::new();
        hub.watch_topics([topic]);
        hub
    }

    const BEAT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn replays_recent_events_of_the_subject_then_live_ones() {
        let hub = hub("jobs");
        hub.publish(
            "jobs",
            &[event("1", Some("a"), "one"), event("2", Some("b"), "x")],
        )
        .await;
        let mut sub = hub.subscribe("jobs", Some("a".into()), None);
        let first = sub.next(BEAT).await.unwrap();
        assert_eq!(first, "id: 1\nevent: job.progress\ndata: one\n\n");
        hub.publish(
            "jobs",
            &[event("3", Some("b"), "y"), event("4", Some("a"), "l1\nl2")],
        )
        .await;
        let next = sub.next(BEAT).await.unwrap();
        assert_eq!(next, "id: 4\nevent: job.progress\ndata: l1\ndata: l2\n\n");
        assert_eq!(sub.next(BEAT).await.unwrap(), ": heartbeat\n\n");
    }

    #[tokio::test]
    async fn duplicates_and_unwatched_topics_are_not_sent() {
        let hub = hub("jobs");
        let mut sub = hub.subscribe("jobs", None, None);
        hub.publish("jobs", &[event("1", Some("a"), "one")]).await;
        hub.publish("jobs", &[event("1", Some("a"), "one")]).await;
        hub.publish("other", &[event("9", Some("a"), "nine")]).await;
        assert!(sub.next(BEAT).await.unwrap().starts_with("id: 1\n"));
        assert_eq!(sub.next(BEAT).await.unwrap(), ": heartbeat\n\n");
        assert!(!hub.watches("other"));
    }

    #[tokio::test]
    async fn last_event_id_skips_what_was_seen_and_replay_is_bounded() {
        let hub = hub("jobs");
        let events: Vec<Event> = (0..40)
            .map(|i| event(&i.to_string(), Some("a"), "d"))
            .collect();
        hub.publish("jobs", &events).await;
        let last = LastEventId::parse(b"37").unwrap();
        let mut sub = hub.subscribe("jobs", Some("a".into()), Some(&last));
        assert!(sub.next(BEAT).await.unwrap().starts_with("id: 38\n"));
        assert!(sub.next(BEAT).await.unwrap().starts_with("id: 39\n"));
        let all = hub.subscribe("jobs", Some("a".into()), None);
        assert_eq!(all.replay.len(), REPLAY_PER_SUBJECT);
        assert_eq!(all.replay[0].id, "8");
    }

    #[tokio::test]
    async fn kept_events_are_bounded_by_memory_and_subjects_go_with_them() {
        let hub = hub("jobs");
        // 1,000 subjects of 3 events of 16 KiB: 48 MiB without the bound.
        for job in 0..1_000 {
            let events: Vec<Event> = (0..3)
                .map(|i| {
                    event(
                        &format!("{job}-{i}"),
                        Some(&job.to_string()),
                        &"x".repeat(16 << 10),
                    )
                })
                .collect();
            hub.publish("jobs", &events).await;
        }
        let (count, bytes) = hub.usage();
        assert!(bytes <= REPLAY_MAX_BYTES, "{bytes}");
        assert!(
            bytes > REPLAY_MAX_BYTES - 4 * (17 << 10),
            "{bytes}: filled to the bound"
        );
        let state = hub.state.lock().unwrap();
        let t = &state.topics["jobs"];
        let in_subjects: usize = t.by_subject.values().map(VecDeque::len).sum();
        assert_eq!(in_subjects, count, "subjects hold what is kept");
        assert!(t.by_subject.len() <= count.div_ceil(3) + 1);
        assert!(
            !t.by_subject.contains_key(&Some("0".to_string())),
            "oldest subject forgotten"
        );
        assert_eq!(t.by_subject[&Some("999".to_string())].len(), 3);
        drop(state);
        let newest = hub.subscribe("jobs", Some("999".into()), None);
        assert_eq!(newest.replay.len(), 3);
        assert!(
            hub.subscribe("jobs", Some("0".into()), None)
                .replay
                .is_empty()
        );
    }

    #[test]
    fn subjects_past_the_bound_go_oldest_first() {
        let mut t = TopicState::new();
        let now = Instant::now();
        for i in 0..MAX_SUBJECTS + 5 {
            let e = Arc::new(event(&i.to_string(), Some(&i.to_string()), ""));
            push(
                t.by_subject.entry(e.subject.clone()).or_default(),
                now,
                e.clone(),
            );
            t.bytes += weight(&e);
            t.kept.push_back(Recent { at: now, event: e });
        }
        t.forget_old(now);
        assert_eq!(t.by_subject.len(), MAX_SUBJECTS);
        assert!(!t.by_subject.contains_key(&Some("4".to_string())));
        assert!(t.by_subject.contains_key(&Some("5".to_string())));
        t.forget_old(now + REPLAY_FOR + Duration::from_secs(1));
        assert!(t.by_subject.is_empty() && t.kept.is_empty());
        assert_eq!(t.bytes, 0, "the count follows what is kept");
    }

    #[tokio::test]
    async fn close_ends_streams() {
        let hub = hub("jobs");
        let mut sub = hub.subscribe("jobs", None, None);
        let waiter = tokio::spawn(async move { sub.next(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.close();
        assert_eq!(waiter.await.unwrap(), None);
        let mut later = hub.subscribe("jobs", None, None);
        assert_eq!(later.next(BEAT).await, None);
    }

    #[tokio::test]
    async fn dropped_clients_are_forgotten_with_their_topic() {
        let hub = hub("jobs");
        let sub = hub.subscribe("jobs", None, None);
        hub.watch_topics(["other"]);
        assert!(hub.state.lock().unwrap().topics.contains_key("jobs"));
        drop(sub);
        hub.watch_topics(["other"]);
        assert!(!hub.state.lock().unwrap().topics.contains_key("jobs"));
    }

    /// Two hubs, as on two nodes of one app, exchanging events through
    /// their broadcasts (`a` and `b` may be the same provider).
    async fn two_nodes(a: Arc<dyn Broadcast>, b: Arc<dyn Broadcast>) -> (SseHub, SseHub) {
        let (one, two) = (SseHub::with_broadcast(a), SseHub::with_broadcast(b));
        one.watch_topics(["jobs"]);
        two.watch_topics(["jobs"]);
        one.ready().await;
        two.ready().await;
        (one, two)
    }

    /// A bounded wait for the next event frame (a heartbeat means none came).
    const WAIT: Duration = Duration::from_secs(10);

    /// Events published on either node reach the clients of both, once
    /// each, and a client resuming on the other node skips what it saw.
    async fn events_cross_nodes_once_and_resume_there(one: SseHub, two: SseHub) {
        let mut on_one = one.subscribe("jobs", Some("j1".into()), None);
        let mut on_two = two.subscribe("jobs", Some("j1".into()), None);
        one.publish("jobs", &[event("1", Some("j1"), "one")]).await;
        two.publish("jobs", &[event("2", Some("j1"), "two")]).await;
        for sub in [&mut on_one, &mut on_two] {
            let mut got = vec![sub.next(WAIT).await.unwrap(), sub.next(WAIT).await.unwrap()];
            got.sort();
            assert_eq!(
                got,
                [
                    "id: 1\nevent: job.progress\ndata: one\n\n",
                    "id: 2\nevent: job.progress\ndata: two\n\n"
                ]
            );
            assert_eq!(sub.next(BEAT).await.unwrap(), ": heartbeat\n\n");
        }
        // Three more from node one, in order; node two records them too.
        let more: Vec<Event> = (3..6)
            .map(|i| event(&i.to_string(), Some("j1"), "d"))
            .collect();
        one.publish("jobs", &more).await;
        for i in 3..6 {
            let got = on_two.next(WAIT).await.unwrap();
            assert!(got.starts_with(&format!("id: {i}\n")), "{got}");
        }
        let last = LastEventId::parse(b"3").unwrap();
        let mut resumed = two.subscribe("jobs", Some("j1".into()), Some(&last));
        assert!(resumed.next(WAIT).await.unwrap().starts_with("id: 4\n"));
        assert!(resumed.next(WAIT).await.unwrap().starts_with("id: 5\n"));
        assert_eq!(resumed.next(BEAT).await.unwrap(), ": heartbeat\n\n");
    }

    #[tokio::test]
    async fn hubs_on_one_in_process_broadcast_share_events() {
        let shared: Arc<dyn Broadcast> =
            Arc::new(gust_backends::embedded::LocalBroadcast::default());
        let (one, two) = two_nodes(shared.clone(), shared).await;
        events_cross_nodes_once_and_resume_there(one, two).await;
    }

    #[tokio::test]
    async fn hubs_on_nats_share_events() {
        const NATS: &str = "nats://127.0.0.1:4222";
        let connect = || async {
            async_nats::connect(NATS)
                .await
                .expect("NATS must run on 127.0.0.1:4222 (scripts/setup.sh --services)")
        };
        let prefix = format!("sse-hub-test-{}", gust_events::new_id());
        let a = gust_backends::nats::NatsBroadcast::new(connect().await, &prefix);
        let b = gust_backends::nats::NatsBroadcast::new(connect().await, &prefix);
        let (one, two) = two_nodes(Arc::new(a), Arc::new(b)).await;
        events_cross_nodes_once_and_resume_there(one, two).await;
    }

    #[tokio::test]
    async fn a_hub_alone_on_its_broadcast_sends_each_event_once() {
        let hub =
            SseHub::with_broadcast(Arc::new(gust_backends::embedded::LocalBroadcast::default()));
        hub.watch_topics(["jobs"]);
        hub.ready().await;
        let mut sub = hub.subscribe("jobs", None, None);
        hub.publish("jobs", &[event("1", Some("a"), "one")]).await;
        assert!(sub.next(WAIT).await.unwrap().starts_with("id: 1\n"));
        assert_eq!(sub.next(BEAT).await.unwrap(), ": heartbeat\n\n");
    }

    #[test]
    fn frames_keep_ids_and_types_on_one_line() {
        let mut e = event("a\nb\0", None, "x\r\ny");
        e.ty = "t\r".into();
        assert_eq!(frame(&e), "id: a b \nevent: t \ndata: x\ndata: y\n\n");
    }

    #[tokio::test]
    async fn a_header_that_names_no_event_replays_all_with_a_notice() {
        let hub = hub("jobs");
        hub.publish("jobs", &[event("1", None, "one")]).await;
        let e = LastEventId::parse(b"\xff").unwrap_err();
        let sub = hub.subscribe("jobs", None, None).with_notice(e);
        let mut body = sub.into_body(BEAT);
        let mut frames = Vec::new();
        while frames.len() < 2 {
            let f = body.frame().await.unwrap().unwrap();
            frames.push(String::from_utf8(f.into_data().unwrap().to_vec()).unwrap());
        }
        assert!(
            frames[0].contains(": Last-Event-ID is not UTF-8"),
            "{frames:?}"
        );
        assert!(frames[1].starts_with("id: 1\n"), "{frames:?}");
    }
}
