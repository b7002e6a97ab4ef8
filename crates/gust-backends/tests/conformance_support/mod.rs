//! Helpers shared by the conformance suites.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gust_backends::{Delivery, Queue};

/// Metadata from pairs.
pub fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The deliveries' bodies as text.
pub fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.message.body.clone()).unwrap())
        .collect()
}

/// Receives until `n` deliveries came or `within` passed.
pub async fn receive_n(
    q: &dyn Queue,
    n: usize,
    visibility: Duration,
    within: Duration,
) -> Vec<Delivery> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        got.extend(q.receive(n - got.len(), visibility, left).await.unwrap());
    }
    got
}

/// Acks every delivery.
pub async fn ack_all(q: &dyn Queue, deliveries: &[Delivery]) {
    futures::future::try_join_all(deliveries.iter().map(|d| q.ack(&d.receipt)))
        .await
        .unwrap();
}
