//! One conformance suite for every [`TopicProvider`]: each case is an async
//! fn over an [`Opener`] (which opens the backend, again after a restart)
//! and runs against the embedded backend and (feature `nats`) against the
//! NATS server at 127.0.0.1:4222 with JetStream, under a unique prefix whose
//! streams are deleted afterwards.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use conformance_support::{ack_all, bodies, meta, receive_n};
use gust_backends::queue::DEAD_LETTER_REASON_KEY;
use gust_backends::{BackendError, Queue, TopicProvider};

/// Opens the backend under test; called again to simulate a restart (the
/// caller drops what it had first).
type Opener =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn TopicProvider>> + Send>> + Send + Sync>;

const LONG: Duration = Duration::from_secs(30);
/// How long a case waits to be sure nothing (more) arrives.
const QUIET: Duration = Duration::from_millis(300);

fn msgs(bodies: &[&str]) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    bodies
        .iter()
        .map(|b| (b.as_bytes().to_vec(), BTreeMap::new()))
        .collect()
}

/// Nothing arrives within [`QUIET`].
async fn assert_quiet(q: &dyn Queue) {
    let extra = receive_n(q, 1, LONG, QUIET).await;
    assert!(extra.is_empty(), "unexpected {:?}", bodies(&extra));
}

async fn every_subscription_gets_every_message_in_order(open: Opener) {
    let p = open().await;
    let topic = p.topic("orders").await.unwrap();
    let a = topic.subscribe("audit").await.unwrap();
    let b = topic.subscribe("billing").await.unwrap();
    topic
        .publish(vec![
            (b"one".to_vec(), meta(&[("ce-type", "order.created")])),
            (b"two".to_vec(), BTreeMap::new()),
            (b"three".to_vec(), BTreeMap::new()),
        ])
        .await
        .unwrap();
    for q in [&a, &b] {
        let got = receive_n(q.as_ref(), 3, LONG, LONG).await;
        assert_eq!(bodies(&got), ["one", "two", "three"], "{}", q.name());
        assert_eq!(got[0].message.metadata["ce-type"], "order.created");
        assert_eq!(got[0].message.attempt, 1);
        ack_all(q.as_ref(), &got).await;
        assert_quiet(q.as_ref()).await;
    }
    assert_eq!(a.name(), "orders--audit");
    assert_eq!(
        topic.subscriptions().await.unwrap(),
        ["audit".to_string(), "billing".to_string()]
    );
}

async fn messages_published_before_subscribing_are_not_delivered(open: Opener) {
    let p = open().await;
    let topic = p.topic("news").await.unwrap();
    topic.publish(msgs(&["nobody hears this"])).await.unwrap();
    let a = topic.subscribe("reader").await.unwrap();
    topic.publish(msgs(&["fresh"])).await.unwrap();
    let got = receive_n(a.as_ref(), 1, LONG, LONG).await;
    assert_eq!(bodies(&got), ["fresh"]);
    ack_all(a.as_ref(), &got).await;
    assert_quiet(a.as_ref()).await;
}

async fn subscriptions_settle_independently(open: Opener) {
    let p = open().await;
    let topic = p.topic("orders").await.unwrap();
    let a = topic.subscribe("fast").await.unwrap();
    let b = topic.subscribe("flaky").await.unwrap();
    topic.publish(msgs(&["x"])).await.unwrap();
    let got_a = receive_n(a.as_ref(), 1, LONG, LONG).await;
    ack_all(a.as_ref(), &got_a).await;
    let got_b = receive_n(b.as_ref(), 1, LONG, LONG).await;
    assert_eq!(bodies(&got_b), ["x"]);
    b.nack(&got_b[0].receipt, Duration::from_millis(200))
        .await
        .unwrap();
    let again = receive_n(b.as_ref(), 1, LONG, LONG).await;
    assert_eq!(bodies(&again), ["x"]);
    assert_eq!(again[0].message.attempt, 2);
    ack_all(b.as_ref(), &again).await;
    // The retry in one subscription is not a delivery in the other.
    assert_quiet(a.as_ref()).await;
    assert_quiet(b.as_ref()).await;
}

async fn an_expired_lease_is_delivered_again_to_that_subscription(open: Opener) {
    let p = open().await;
    let topic = p.topic("jobs").await.unwrap();
    let a = topic.subscribe("worker").await.unwrap();
    let b = topic.subscribe("other").await.unwrap();
    topic.publish(msgs(&["job"])).await.unwrap();
    // The same visibility both times: on NATS a receive with another one
    // changes the lease of what is already delivered too.
    let short = Duration::from_millis(300);
    let first = receive_n(a.as_ref(), 1, short, LONG).await;
    assert_eq!(first.len(), 1);
    let again = receive_n(a.as_ref(), 1, short, Duration::from_secs(10)).await;
    assert_eq!(bodies(&again), ["job"]);
    assert_eq!(again[0].message.attempt, 2);
    ack_all(a.as_ref(), &again).await;
    let other = receive_n(b.as_ref(), 1, LONG, LONG).await;
    assert_eq!(other[0].message.attempt, 1);
    ack_all(b.as_ref(), &other).await;
}

async fn dead_letters_and_redrive_stay_in_their_subscription(open: Opener) {
    let p = open().await;
    let topic = p.topic("payments").await.unwrap();
    let a = topic.subscribe("strict").await.unwrap();
    let b = topic.subscribe("lenient").await.unwrap();
    topic.publish(msgs(&["bad", "good"])).await.unwrap();
    let got_b = receive_n(b.as_ref(), 2, LONG, LONG).await;
    ack_all(b.as_ref(), &got_b).await;
    let got_a = receive_n(a.as_ref(), 2, LONG, LONG).await;
    assert_eq!(bodies(&got_a), ["bad", "good"]);
    a.dead_letter(&got_a[0].receipt, "amount is negative")
        .await
        .unwrap();
    a.ack(&got_a[1].receipt).await.unwrap();

    let dead = a.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "amount is negative");
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].message.body, b"bad");
    assert!(b.dead_letters(10).await.unwrap().is_empty());

    assert_eq!(a.redrive().await.unwrap(), 1);
    let back = receive_n(a.as_ref(), 1, LONG, LONG).await;
    assert_eq!(bodies(&back), ["bad"]);
    assert!(
        !back[0]
            .message
            .metadata
            .contains_key(DEAD_LETTER_REASON_KEY)
    );
    ack_all(a.as_ref(), &back).await;
    assert!(a.dead_letters(10).await.unwrap().is_empty());
    // The redrive went to `strict` only.
    assert_quiet(b.as_ref()).await;
    assert_quiet(a.as_ref()).await;
}

async fn subscriptions_survive_a_restart(open: Opener) {
    {
        let p = open().await;
        let topic = p.topic("orders").await.unwrap();
        let a = topic.subscribe("audit").await.unwrap();
        topic.publish(msgs(&["1", "2"])).await.unwrap();
        // Leased but never settled: waiting again after the restart.
        let leased = receive_n(a.as_ref(), 1, Duration::from_millis(200), LONG).await;
        assert_eq!(leased.len(), 1);
    }
    let p = open().await;
    let topic = p.topic("orders").await.unwrap();
    assert_eq!(topic.subscriptions().await.unwrap(), ["audit".to_string()]);
    assert_eq!(p.topics().await.unwrap(), ["orders".to_string()]);
    // Published before anyone subscribed in this process: still reaches it.
    topic.publish(msgs(&["3"])).await.unwrap();
    let a = topic.subscribe("audit").await.unwrap();
    // A short lease: on engines where a receive's visibility also renews
    // what is already leased (NATS' consumer `ack_wait`), "1" must come
    // back well within the wait, not at its very end.
    let got = receive_n(a.as_ref(), 3, Duration::from_secs(5), LONG).await;
    let mut seen = bodies(&got);
    seen.sort();
    assert_eq!(seen, ["1", "2", "3"]);
    ack_all(a.as_ref(), &got).await;
    assert_quiet(a.as_ref()).await;
}

async fn unsubscribe_stops_delivery(open: Opener) {
    let p = open().await;
    let topic = p.topic("alerts").await.unwrap();
    let a = topic.subscribe("pager").await.unwrap();
    let b = topic.subscribe("email").await.unwrap();
    topic.publish(msgs(&["old"])).await.unwrap();
    topic.unsubscribe("email").await.unwrap();
    topic.unsubscribe("never-existed").await.unwrap();
    assert_eq!(topic.subscriptions().await.unwrap(), ["pager".to_string()]);
    topic.publish(msgs(&["new"])).await.unwrap();
    let got = receive_n(a.as_ref(), 2, LONG, LONG).await;
    assert_eq!(bodies(&got), ["old", "new"]);
    ack_all(a.as_ref(), &got).await;
    drop(b);
    // Subscribing again starts afresh: neither `old` nor `new`.
    let b = topic.subscribe("email").await.unwrap();
    topic.publish(msgs(&["newest"])).await.unwrap();
    let got = receive_n(b.as_ref(), 1, LONG, LONG).await;
    assert_eq!(bodies(&got), ["newest"]);
    ack_all(b.as_ref(), &got).await;
    assert_quiet(b.as_ref()).await;
}

async fn topics_are_isolated_and_listed(open: Opener) {
    let p = open().await;
    let orders = p.topic("orders").await.unwrap();
    let unused = p.topic("unused").await.unwrap();
    let a = orders.subscribe("audit").await.unwrap();
    let other = p
        .topic("other")
        .await
        .unwrap()
        .subscribe("audit")
        .await
        .unwrap();
    unused.publish(msgs(&["lost"])).await.unwrap();
    orders.publish(msgs(&["mine"])).await.unwrap();
    let got = receive_n(a.as_ref(), 1, LONG, LONG).await;
    assert_eq!(bodies(&got), ["mine"]);
    ack_all(a.as_ref(), &got).await;
    assert_quiet(other.as_ref()).await;
    assert_eq!(
        p.topics().await.unwrap(),
        ["orders".to_string(), "other".to_string()]
    );
}

async fn reserved_metadata_is_rejected(open: Opener) {
    let p = open().await;
    let topic = p.topic("orders").await.unwrap();
    let _a = topic.subscribe("audit").await.unwrap();
    let err = topic
        .publish(vec![(b"x".to_vec(), meta(&[("gust-id", "forged")]))])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidValue { .. }), "{err}");
}

/// Every case, run once per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("queues.redb");
                    let open: super::Opener = std::sync::Arc::new(move || {
                        let path = path.clone();
                        Box::pin(async move {
                            let queues = gust_backends::embedded::EmbeddedQueues::open(&path).unwrap();
                            let topics = gust_backends::embedded::EmbeddedTopics::new(queues).unwrap();
                            std::sync::Arc::new(topics) as std::sync::Arc<dyn gust_backends::TopicProvider>
                        })
                    });
                    super::$case(open).await;
                }
            )*
        }

        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::nats_support::run(|_, prefix| {
                        let open: super::Opener = std::sync::Arc::new(move || {
                            let prefix = prefix.clone();
                            Box::pin(async move {
                                let p = gust_backends::nats::NatsQueues::connect(
                                    super::nats_support::URL,
                                    &prefix,
                                )
                                .await
                                .unwrap();
                                std::sync::Arc::new(p) as std::sync::Arc<dyn gust_backends::TopicProvider>
                            })
                        });
                        super::$case(open)
                    })
                    .await;
                }
            )*
        }
    };
}

conformance!(
    every_subscription_gets_every_message_in_order,
    messages_published_before_subscribing_are_not_delivered,
    subscriptions_settle_independently,
    an_expired_lease_is_delivered_again_to_that_subscription,
    dead_letters_and_redrive_stay_in_their_subscription,
    subscriptions_survive_a_restart,
    unsubscribe_stops_delivery,
    topics_are_isolated_and_listed,
    reserved_metadata_is_rejected,
);

mod conformance_support;

#[cfg(feature = "nats")]
mod nats_support;
