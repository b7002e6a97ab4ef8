//! The one settle path: what happens to an event after its function ran.
//!
//! Every event trigger turns the function's [`Outcome`] into a
//! [`Settlement`] here, with the function's retry policy, and carries it out
//! on its own source (a queue acks or nacks its delivery; a stream or change
//! feed retries in place to keep its order). Every trigger dead-letters the
//! same way: into the queue [`retry_queue`]`(source, function)`'s dead
//! letters (`<source>--<function>-deadletter`), listable and redrivable with
//! `gust queue dlq list|redrive <source>--<function>`; a redrive puts the
//! events on that queue, which the trigger consumes with the same function.

use std::collections::BTreeMap;
use std::time::Duration;

use gust_backends::Queue;
use gust_events::{Event, Outcome};
use gust_manifest::RetryPolicy;

use crate::retry::backoff;

/// What to do with an event after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: acknowledge it.
    Ack,
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: dead-letter it with this reason.
    DeadLetter(String),
}

/// The settlement of attempt `attempt` (1 = first) that ended in `outcome`.
pub fn settle(outcome: &Outcome, attempt: u32, policy: &RetryPolicy) -> Settlement {
    match outcome {
        Outcome::Done => Settlement::Ack,
        Outcome::Retry(_) if attempt < policy.max_attempts => {
            Settlement::Retry(backoff(policy, attempt))
        }
        Outcome::Retry(reason) => {
            Settlement::DeadLetter(format!("gave up after {attempt} attempts: {reason}"))
        }
        Outcome::Fail(reason) => Settlement::DeadLetter(format!("not retryable: {reason}")),
    }
}

/// The queue through which a trigger that is not a queue (stream, change
/// feed, blob) dead-letters and redrives a function's events:
/// `<source>--<function>`.
pub fn retry_queue(source: &str, function: &str) -> String {
    format!("{source}--{function}")
}

/// Dead-letters `event` into `queue`'s dead letters (the event travels as
/// a CloudEvent in the message's metadata, so a redriven message is the same
/// event again), retrying while the queue's engine fails: an event is never
/// dropped.
pub async fn dead_letter_event(queue: &dyn Queue, event: &Event, reason: &str, attempts: u32) {
    let metadata: BTreeMap<String, String> = gust_events::to_metadata(event);
    loop {
        match queue
            .add_dead_letter(event.data.clone(), metadata.clone(), reason, attempts)
            .await
        {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(queue = %queue.name(), event = %event.id, "cannot dead-letter an event, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gust_manifest::RetryStrategy;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            strategy: RetryStrategy::Fixed,
            max_attempts: 3,
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }

    #[test]
    fn outcomes_settle_by_attempt_and_policy() {
        let p = policy();
        assert_eq!(settle(&Outcome::Done, 1, &p), Settlement::Ack);
        assert_eq!(
            settle(&Outcome::Retry("busy".into()), 2, &p),
            Settlement::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            settle(&Outcome::Retry("busy".into()), 3, &p),
            Settlement::DeadLetter("gave up after 3 attempts: busy".into())
        );
        assert_eq!(
            settle(&Outcome::Fail("bad".into()), 1, &p),
            Settlement::DeadLetter("not retryable: bad".into())
        );
    }
}
