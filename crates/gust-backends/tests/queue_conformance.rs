//! One conformance suite for every [`QueueProvider`]: each case is an async
//! fn over `Arc<dyn QueueProvider>` and runs against the embedded backend and
//! (feature `nats`) against the NATS server at 127.0.0.1:4222 with JetStream,
//! under a unique prefix whose streams are deleted afterwards.
//!
//! Where an engine cannot do what the embedded backend does, [`Caps`] says
//! what it does instead, and the case checks that.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use conformance_support::{ack_all, bodies, meta, receive_n};
use gust_backends::queue::{DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_REASON_KEY, dead_letter_name};
use gust_backends::{BackendError, Queue, QueueProvider};

/// What a backend does where engines differ.
#[derive(Debug, Clone, Copy)]
struct Caps {
    /// A receipt of an earlier delivery is rejected with `StaleReceipt`
    /// (embedded). Otherwise it settles the current delivery (NATS acks by
    /// stream sequence).
    rejects_stale_receipts: bool,
    /// `depth` and `peek` count messages that were delivered and wait to be
    /// delivered again (embedded); NATS counts only never-delivered ones.
    counts_redeliveries_as_waiting: bool,
}

const EMBEDDED: Caps = Caps {
    rejects_stale_receipts: true,
    counts_redeliveries_as_waiting: true,
};

#[cfg(feature = "nats")]
const NATS: Caps = Caps {
    rejects_stale_receipts: false,
    counts_redeliveries_as_waiting: false,
};

const LONG: Duration = Duration::from_secs(30);
const NOW: Duration = Duration::ZERO;

async fn send(q: &dyn Queue, body: &str) -> String {
    q.send(body.as_bytes().to_vec(), BTreeMap::new())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Cases

async fn send_receive_ack(p: Arc<dyn QueueProvider>, caps: Caps) {
    let q = p.queue("orders").await.unwrap();
    assert_eq!(q.name(), "orders");
    let before = SystemTime::now() - Duration::from_secs(1);
    let id = q
        .send(
            b"hello".to_vec(),
            meta(&[("content-type", "text/plain"), ("trace", "abc")]),
        )
        .await
        .unwrap();
    let got = q.receive(10, LONG, NOW).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0].message;
    assert_eq!(m.id, id);
    assert_eq!(m.body, b"hello");
    assert_eq!(
        m.metadata,
        meta(&[("content-type", "text/plain"), ("trace", "abc")])
    );
    assert_eq!(m.attempt, 1);
    assert!(m.enqueued_at >= before && m.enqueued_at <= SystemTime::now() + Duration::from_secs(1));
    q.ack(&got[0].receipt).await.unwrap();
    assert!(
        q.receive(10, LONG, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.depth().await.unwrap(), 0);
    let again = q.ack(&got[0].receipt).await;
    if caps.rejects_stale_receipts {
        assert!(
            matches!(again, Err(BackendError::StaleReceipt(_))),
            "{again:?}"
        );
    } else {
        again.unwrap();
    }
    // Gust's own metadata keys are reserved.
    let reserved = q.send(vec![], meta(&[("gust-id", "x")])).await;
    assert!(
        matches!(reserved, Err(BackendError::InvalidValue { .. })),
        "{reserved:?}"
    );
}

async fn batch_in_fifo_order(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("batch").await.unwrap();
    let messages = (0..20)
        .map(|i| {
            (
                format!("m{i:02}").into_bytes(),
                meta(&[("i", &i.to_string())]),
            )
        })
        .collect();
    let ids = q.send_batch(messages).await.unwrap();
    assert_eq!(ids.len(), 20);
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 20);
    assert_eq!(q.depth().await.unwrap(), 20);

    let first = q.receive(7, LONG, NOW).await.unwrap();
    assert_eq!(
        bodies(&first),
        (0..7).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    let ids_got: Vec<_> = first.iter().map(|d| d.message.id.clone()).collect();
    assert_eq!(ids_got, ids[..7]);
    let rest = receive_n(&*q, 13, LONG, Duration::from_secs(3)).await;
    assert_eq!(
        bodies(&rest),
        (7..20).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    assert_eq!(rest[0].message.metadata, meta(&[("i", "7")]));
    ack_all(&*q, &first).await;
    ack_all(&*q, &rest).await;
    assert_eq!(q.depth().await.unwrap(), 0);
    assert!(q.send_batch(vec![]).await.unwrap().is_empty());
    assert!(q.receive(0, LONG, NOW).await.unwrap().is_empty());
}

async fn expired_lease_is_delivered_again(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("expiry").await.unwrap();
    let id = send(&*q, "x").await;
    let visibility = Duration::from_millis(400);
    let first = q.receive(1, visibility, NOW).await.unwrap();
    assert_eq!(first[0].message.attempt, 1);
    assert!(
        q.receive(1, visibility, NOW).await.unwrap().is_empty(),
        "leased"
    );
    let started = Instant::now();
    // The same visibility: on NATS the lease length belongs to the consumer,
    // so a receive with another visibility changes every lease.
    let second = q
        .receive(1, visibility, Duration::from_secs(3))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(second.len(), 1, "delivered again after the lease ran out");
    assert_eq!(second[0].message.id, id);
    assert_eq!(second[0].message.attempt, 2);
    assert!(
        waited < Duration::from_millis(1500),
        "woke late: {waited:?}"
    );
    q.ack(&second[0].receipt).await.unwrap();
}

async fn nack_with_delay(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("nack").await.unwrap();
    send(&*q, "x").await;
    let d = q.receive(1, LONG, NOW).await.unwrap().remove(0);
    let nacked = Instant::now();
    q.nack(&d.receipt, Duration::from_millis(700))
        .await
        .unwrap();
    assert!(
        q.receive(1, LONG, NOW).await.unwrap().is_empty(),
        "hidden during the delay"
    );
    assert!(
        q.receive(1, LONG, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let again = q.receive(1, LONG, Duration::from_secs(3)).await.unwrap();
    let after = nacked.elapsed();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.attempt, 2);
    assert!(
        after >= Duration::from_millis(650),
        "visible too early: {after:?}"
    );
    assert!(
        after < Duration::from_millis(2000),
        "visible too late: {after:?}"
    );
    // Without a delay it is back at once.
    q.nack(&again[0].receipt, NOW).await.unwrap();
    let third = q.receive(1, LONG, Duration::from_secs(2)).await.unwrap();
    assert_eq!(third[0].message.attempt, 3);
    q.ack(&third[0].receipt).await.unwrap();
}

async fn extend_keeps_the_lease(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("extend").await.unwrap();
    send(&*q, "x").await;
    let visibility = Duration::from_millis(600);
    let d = q.receive(1, visibility, NOW).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.extend(&d.receipt, visibility).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // 800 ms after the receive: past the first lease, inside the renewed one.
    assert!(
        q.receive(1, visibility, NOW).await.unwrap().is_empty(),
        "still leased"
    );
    q.ack(&d.receipt).await.unwrap();
    assert!(
        q.receive(1, visibility, Duration::from_millis(900))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn dead_letter_and_redrive(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("jobs").await.unwrap();
    let sent_at = SystemTime::now() - Duration::from_secs(1);
    let poison = q
        .send(b"poison".to_vec(), meta(&[("kind", "bad")]))
        .await
        .unwrap();
    send(&*q, "fine").await;
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(q.redrive().await.unwrap(), 0);

    let got = q.receive(2, LONG, NOW).await.unwrap();
    assert_eq!(bodies(&got), ["poison", "fine"]);
    q.ack(&got[1].receipt).await.unwrap();
    q.nack(&got[0].receipt, NOW).await.unwrap();
    let retry = q
        .receive(1, LONG, Duration::from_secs(2))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(retry.message.attempt, 2);
    q.dead_letter(&retry.receipt, "boom: line 1\nline 2")
        .await
        .unwrap();

    assert_eq!(q.depth().await.unwrap(), 0);
    assert!(
        q.receive(1, LONG, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let dl = &dead[0];
    assert_eq!(dl.message.id, poison);
    assert_eq!(dl.message.body, b"poison");
    assert_eq!(dl.message.metadata, meta(&[("kind", "bad")]));
    assert_eq!(dl.reason, "boom: line 1\nline 2");
    assert_eq!(dl.attempts, 2);
    assert!(dl.dead_lettered_at >= sent_at);

    // The dead-letter queue is a queue: its messages carry the reason.
    let dlq = p.queue(&dead_letter_name("jobs")).await.unwrap();
    let peeked = dlq.peek(10).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].body, b"poison");
    assert_eq!(peeked[0].metadata["kind"], "bad");
    assert_eq!(
        peeked[0].metadata[DEAD_LETTER_REASON_KEY],
        "boom: line 1\nline 2"
    );
    assert_eq!(peeked[0].metadata[DEAD_LETTER_ATTEMPTS_KEY], "2");

    assert_eq!(q.redrive().await.unwrap(), 1);
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    assert!(dlq.peek(10).await.unwrap().is_empty());
    let back = q.receive(1, LONG, Duration::from_secs(2)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message.id, poison);
    assert_eq!(back[0].message.attempt, 1, "attempts reset");
    assert_eq!(back[0].message.metadata, meta(&[("kind", "bad")]));
    q.ack(&back[0].receipt).await.unwrap();
}

async fn dead_letters_are_counted_beyond_any_listing(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("counted").await.unwrap();
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
    // More than the 10,000 the admin API once counted by listing them.
    const N: usize = 10_001;
    let q2 = q.clone();
    let adds = (0..N).map(|i| {
        let q = q2.clone();
        async move {
            q.add_dead_letter(format!("{i}").into_bytes(), BTreeMap::new(), "gave up", 3)
                .await
        }
    });
    let mut added = 0;
    let mut adds = adds.peekable();
    while adds.peek().is_some() {
        let chunk: Vec<_> = adds.by_ref().take(500).collect();
        for r in futures::future::join_all(chunk).await {
            r.unwrap();
            added += 1;
        }
    }
    assert_eq!(added, N);
    assert_eq!(q.dead_letter_count().await.unwrap(), N as u64);
    assert_eq!(q.dead_letters(10).await.unwrap().len(), 10);
    // A dead letter received from the dead-letter queue but not settled is
    // still there; acked, it is gone.
    let dlq = p.queue(&dead_letter_name("counted")).await.unwrap();
    let got = dlq.receive(1, LONG, NOW).await.unwrap();
    assert_eq!(q.dead_letter_count().await.unwrap(), N as u64);
    dlq.ack(&got[0].receipt).await.unwrap();
    // (An engine may apply the ack a moment later.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.dead_letter_count().await.unwrap() != N as u64 - 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(q.dead_letter_count().await.unwrap(), N as u64 - 1);
    assert_eq!(q.redrive().await.unwrap(), N as u64 - 1);
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
    assert_eq!(q.depth().await.unwrap(), N as u64 - 1);
}

async fn stale_receipt_does_not_settle_the_new_delivery(p: Arc<dyn QueueProvider>, caps: Caps) {
    let q = p.queue("stale").await.unwrap();
    send(&*q, "x").await;
    let visibility = Duration::from_millis(300);
    let old = q.receive(1, visibility, NOW).await.unwrap().remove(0);
    let new = q
        .receive(1, visibility, Duration::from_secs(3))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.message.attempt, 2);
    assert_ne!(old.receipt, new.receipt);
    let acked = q.ack(&old.receipt).await;
    if caps.rejects_stale_receipts {
        assert!(
            matches!(acked, Err(BackendError::StaleReceipt(_))),
            "{acked:?}"
        );
        for result in [
            q.nack(&old.receipt, NOW).await,
            q.extend(&old.receipt, LONG).await,
            q.dead_letter(&old.receipt, "late").await,
        ] {
            assert!(
                matches!(result, Err(BackendError::StaleReceipt(_))),
                "{result:?}"
            );
        }
        // The new delivery is untouched and settles normally.
        assert!(q.dead_letters(1).await.unwrap().is_empty());
        q.ack(&new.receipt).await.unwrap();
        assert!(matches!(
            q.ack(&new.receipt).await,
            Err(BackendError::StaleReceipt(_))
        ));
    } else {
        // NATS settles by stream sequence: the old receipt acked the message
        // (it is not delivered again), and the new receipt's ack is a no-op.
        acked.unwrap();
        assert!(
            q.receive(1, visibility, Duration::from_millis(1200))
                .await
                .unwrap()
                .is_empty()
        );
        q.ack(&new.receipt).await.unwrap();
    }
    assert!(
        q.receive(1, LONG, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.depth().await.unwrap(), 0);
}

async fn expired_receipt_still_acks_until_redelivered(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("late-ack").await.unwrap();
    send(&*q, "x").await;
    let d = q
        .receive(1, Duration::from_millis(200), NOW)
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.ack(&d.receipt).await.unwrap();
    assert!(
        q.receive(1, LONG, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn peek_does_not_lease(p: Arc<dyn QueueProvider>, caps: Caps) {
    let q = p.queue("peek").await.unwrap();
    assert!(q.peek(10).await.unwrap().is_empty());
    let ids = q
        .send_batch(vec![
            (b"a".to_vec(), meta(&[("k", "1")])),
            (b"b".to_vec(), BTreeMap::new()),
            (b"c".to_vec(), BTreeMap::new()),
        ])
        .await
        .unwrap();
    let two = q.peek(2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].id, ids[0]);
    assert_eq!(two[0].body, b"a");
    assert_eq!(two[0].metadata, meta(&[("k", "1")]));
    assert_eq!(two[0].attempt, 0);
    assert_eq!(two[1].body, b"b");
    assert_eq!(q.peek(10).await.unwrap().len(), 3);
    assert_eq!(q.depth().await.unwrap(), 3);

    let got = q.receive(10, LONG, NOW).await.unwrap();
    assert_eq!(bodies(&got), ["a", "b", "c"]);
    assert!(got.iter().all(|d| d.message.attempt == 1));
    assert!(
        q.peek(10).await.unwrap().is_empty(),
        "leased ones are not waiting"
    );
    q.nack(&got[0].receipt, Duration::from_secs(30))
        .await
        .unwrap();
    let after_nack = q.peek(10).await.unwrap();
    if caps.counts_redeliveries_as_waiting {
        assert_eq!(after_nack.len(), 1);
        assert_eq!(after_nack[0].attempt, 1);
    } else {
        assert!(after_nack.is_empty());
    }
    ack_all(&*q, &got[1..]).await;
}

async fn depth_counts_waiting_messages(p: Arc<dyn QueueProvider>, caps: Caps) {
    let q = p.queue("depth").await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
    for body in ["a", "b", "c"] {
        send(&*q, body).await;
    }
    assert_eq!(q.depth().await.unwrap(), 3);
    let a = q.receive(1, LONG, NOW).await.unwrap().remove(0);
    assert_eq!(q.depth().await.unwrap(), 2);
    q.ack(&a.receipt).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 2);
    let b = q.receive(1, LONG, NOW).await.unwrap().remove(0);
    q.nack(&b.receipt, Duration::from_secs(30)).await.unwrap();
    let expected = if caps.counts_redeliveries_as_waiting {
        2
    } else {
        1
    };
    assert_eq!(q.depth().await.unwrap(), expected);
    let c = q.receive(1, LONG, NOW).await.unwrap().remove(0);
    q.dead_letter(&c.receipt, "no").await.unwrap();
    assert_eq!(q.depth().await.unwrap(), expected - 1);
}

async fn receive_wakes_when_a_message_arrives(p: Arc<dyn QueueProvider>, _caps: Caps) {
    let q = p.queue("wake").await.unwrap();
    // Make sure the queue exists before the receiver starts waiting.
    assert!(q.receive(1, LONG, NOW).await.unwrap().is_empty());
    let receiver = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = q.receive(10, LONG, Duration::from_secs(10)).await.unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&*q, "ping").await;
    let (got, waited) = receiver.await.unwrap();
    assert_eq!(bodies(&got), ["ping"]);
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
    ack_all(&*q, &got).await;
    // An empty wait ends on time.
    let started = Instant::now();
    assert!(
        q.receive(1, LONG, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

async fn queues_are_isolated(p: Arc<dyn QueueProvider>, caps: Caps) {
    let a = p.queue("iso-a").await.unwrap();
    let b = p.queue("iso.b").await.unwrap();
    send(&*a, "for a").await;
    assert!(b.receive(1, LONG, NOW).await.unwrap().is_empty());
    assert_eq!(b.depth().await.unwrap(), 0);
    let d = a.receive(1, LONG, NOW).await.unwrap().remove(0);
    // A receipt of one queue does not settle anything in another.
    let wrong = b.ack(&d.receipt).await;
    if caps.rejects_stale_receipts {
        assert!(wrong.is_err());
    }
    a.ack(&d.receipt).await.unwrap();
}

/// Every case, run once per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let provider =
                        gust_backends::embedded::EmbeddedQueues::open(&dir.path().join("queues.redb"))
                            .unwrap();
                    super::$case(Arc::new(provider), super::EMBEDDED).await;
                }
            )*
            use std::sync::Arc;
        }

        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::nats_support::run(|p, _| super::$case(p, super::NATS)).await;
                }
            )*
        }
    };
}

conformance!(
    send_receive_ack,
    batch_in_fifo_order,
    expired_lease_is_delivered_again,
    nack_with_delay,
    extend_keeps_the_lease,
    dead_letter_and_redrive,
    dead_letters_are_counted_beyond_any_listing,
    stale_receipt_does_not_settle_the_new_delivery,
    expired_receipt_still_acks_until_redelivered,
    peek_does_not_lease,
    depth_counts_waiting_messages,
    receive_wakes_when_a_message_arrives,
    queues_are_isolated,
);

mod conformance_support;

#[cfg(feature = "nats")]
mod nats_support;
