//! One conformance suite for every [`KeyValueProvider`]: each case is an
//! async fn over an [`Engine`] (embedded, and PostgreSQL, Redis and NATS
//! JetStream on 127.0.0.1 with their features), under a namespace of its
//! own that is deleted afterwards.

use std::sync::Arc;

use engines::Engine;
use gust_backends::{BackendError, KeyValue};

#[path = "conformance_support/kv_engines.rs"]
mod engines;

/// Every key of `store`, a page of `page` at a time.
async fn all_keys(store: &dyn KeyValue, page: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let got = store.list_keys(cursor, page).await.unwrap();
        assert!(got.keys.len() <= page);
        keys.extend(got.keys);
        match got.cursor {
            Some(next) => cursor = Some(next),
            None => return keys,
        }
    }
}

// ---------------------------------------------------------------------------
// Cases

async fn set_get_delete_exists(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("basics").unwrap();
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(!s.exists("k").await.unwrap());
    s.set("k", b"v1".to_vec()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(s.exists("k").await.unwrap());
    s.set("k", b"v2".to_vec()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    s.delete("k").await.unwrap();
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(!s.exists("k").await.unwrap());
    s.delete("k").await.unwrap();
    s.delete("never-set").await.unwrap();
    // Deleted keys can be written again.
    s.set("k", b"v3".to_vec()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v3"[..]));
}

async fn binary_values_and_odd_keys(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("binary").unwrap();
    let every_byte: Vec<u8> = (0..=255).collect();
    s.set("bytes", every_byte.clone()).await.unwrap();
    assert_eq!(s.get("bytes").await.unwrap(), Some(every_byte));
    // An empty value is a value, not an absence.
    s.set("empty", vec![]).await.unwrap();
    assert_eq!(s.get("empty").await.unwrap(), Some(vec![]));
    assert!(s.exists("empty").await.unwrap());
    let big = vec![7u8; 512 * 1024];
    s.set("big", big.clone()).await.unwrap();
    assert_eq!(s.get("big").await.unwrap(), Some(big));
    for key in [
        "", "a b", "a.b", "a/b", "a:b", "{x}", "*", "ü ✓", "_", "%25", "k\t",
    ] {
        let value = format!("value of {key:?}").into_bytes();
        s.set(key, value.clone()).await.unwrap();
        assert_eq!(s.get(key).await.unwrap(), Some(value), "key {key:?}");
    }
    assert_eq!(s.get("a_b").await.unwrap(), None, "a.b is not a_b");
}

async fn list_keys_in_order_with_cursor_pages(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("listing").unwrap();
    let other = p.open("listing-other").unwrap();
    other.set("also-here", vec![1]).await.unwrap();
    let empty = s.list_keys(None, 10).await.unwrap();
    assert!(empty.keys.is_empty());
    assert_eq!(empty.cursor, None);

    let mut keys: Vec<String> = ["b", "a", "B", "a.b", "a b", "ab", "ü", "z", "0", "_x"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    for k in &keys {
        s.set(k, k.as_bytes().to_vec()).await.unwrap();
    }
    keys.sort(); // byte order
    for page in [1, 3, 5, 10, 100] {
        assert_eq!(all_keys(&*s, page).await, keys, "page size {page}");
    }
    // A full last page says there is no more.
    let first = s.list_keys(None, 5).await.unwrap();
    assert_eq!(first.keys, keys[..5]);
    let second = s.list_keys(first.cursor, 5).await.unwrap();
    assert_eq!(second.keys, keys[5..]);
    assert_eq!(second.cursor, None);
    // Deleted keys leave the listing.
    s.delete_many(vec!["a".into(), "z".into()]).await.unwrap();
    let left: Vec<String> = keys
        .iter()
        .filter(|k| *k != "a" && *k != "z")
        .cloned()
        .collect();
    assert_eq!(all_keys(&*s, 4).await, left);
    assert_eq!(all_keys(&*other, 4).await, vec!["also-here"]);
}

async fn increment_semantics(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("counters").unwrap();
    assert_eq!(s.increment("n", 5).await.unwrap(), 5);
    assert_eq!(s.increment("n", 0).await.unwrap(), 5);
    assert_eq!(s.increment("n", 37).await.unwrap(), 42);
    assert_eq!(s.get("n").await.unwrap().as_deref(), Some(&b"42"[..]));
    // A number set as text counts on.
    s.set("m", b"41".to_vec()).await.unwrap();
    assert_eq!(s.increment("m", 1).await.unwrap(), 42);
    s.set("padded", b" 7 ".to_vec()).await.unwrap();
    assert_eq!(s.increment("padded", 1).await.unwrap(), 8);
    assert_eq!(s.get("padded").await.unwrap().as_deref(), Some(&b"8"[..]));
    // Incremented keys are listed like any other.
    assert!(all_keys(&*s, 10).await.contains(&"n".to_string()));
    // Anything else is refused and left alone.
    for bad in [&b"abc"[..], b"-3", b"1.5", b"", &[0xff, 0xfe]] {
        s.set("bad", bad.to_vec()).await.unwrap();
        let got = s.increment("bad", 1).await;
        assert!(
            matches!(got, Err(BackendError::InvalidValue { .. })),
            "{bad:?}: {got:?}"
        );
        assert_eq!(s.get("bad").await.unwrap().as_deref(), Some(bad));
    }
}

async fn concurrent_increments_sum_exactly(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("racing-counters").unwrap();
    let tasks: Vec<_> = (1..=8u64)
        .map(|task| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..20 {
                    seen.push(s.increment("n", task).await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.unwrap());
    }
    let total: u64 = (1..=8u64).map(|task| task * 20).sum();
    assert_eq!(s.increment("n", 0).await.unwrap(), total);
    // Every increment saw a different total.
    results.sort_unstable();
    results.dedup();
    assert_eq!(results.len(), 160);
    assert_eq!(results.last(), Some(&total));
}

async fn compare_and_swap_semantics(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("cas").unwrap();
    // Only if absent.
    assert!(s.compare_and_swap("k", None, b"a".to_vec()).await.unwrap());
    assert!(!s.compare_and_swap("k", None, b"b".to_vec()).await.unwrap());
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"a"[..]));
    // Only if equal.
    assert!(
        !s.compare_and_swap("k", Some(b"x"), b"b".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !s.compare_and_swap("k", Some(b""), b"b".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"a"[..]));
    assert!(
        s.compare_and_swap("k", Some(b"a"), b"b".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"b"[..]));
    // Expecting a value where there is none changes nothing.
    assert!(
        !s.compare_and_swap("absent", Some(b"a"), b"b".to_vec())
            .await
            .unwrap()
    );
    assert!(!s.exists("absent").await.unwrap());
    // Empty and binary values compare exactly.
    s.set("e", vec![]).await.unwrap();
    assert!(!s.compare_and_swap("e", None, vec![1]).await.unwrap());
    assert!(
        s.compare_and_swap("e", Some(b""), vec![0, 255])
            .await
            .unwrap()
    );
    assert!(
        s.compare_and_swap("e", Some(&[0, 255]), vec![1])
            .await
            .unwrap()
    );
    // A deleted key is absent again.
    s.delete("k").await.unwrap();
    assert!(s.compare_and_swap("k", None, b"c".to_vec()).await.unwrap());
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"c"[..]));
    // Swapped keys are listed.
    assert_eq!(all_keys(&*s, 10).await, vec!["e", "k"]);
}

async fn compare_and_swap_races_have_one_winner(e: Arc<Engine>) {
    let p = e.kv().await;
    // Two providers, as two nodes would have.
    let q = e.kv().await;
    let stores = [p.open("cas-race").unwrap(), q.open("cas-race").unwrap()];
    for round in 0..3 {
        let key = format!("k{round}");
        let expected: Option<Vec<u8>> = (round > 0).then(|| b"start".to_vec());
        if let Some(v) = &expected {
            stores[0].set(&key, v.clone()).await.unwrap();
        }
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = stores[i % 2].clone();
                let (key, expected) = (key.clone(), expected.clone());
                tokio::spawn(async move {
                    let won = s
                        .compare_and_swap(
                            &key,
                            expected.as_deref(),
                            format!("task {i}").into_bytes(),
                        )
                        .await
                        .unwrap();
                    won.then_some(i)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            winners.extend(t.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = stores[1].get(&key).await.unwrap().unwrap();
        assert_eq!(stored, format!("task {}", winners[0]).into_bytes());
    }
}

async fn many_at_once(e: Arc<Engine>) {
    let p = e.kv().await;
    let s = p.open("batches").unwrap();
    s.set_many(vec![]).await.unwrap();
    s.delete_many(vec![]).await.unwrap();
    assert_eq!(s.get_many(vec![]).await.unwrap(), vec![]);
    s.set_many(vec![
        ("a".into(), b"1".to_vec()),
        ("b".into(), b"2".to_vec()),
        ("c".into(), vec![]),
        ("a".into(), b"3".to_vec()), // the last value for a key wins
    ])
    .await
    .unwrap();
    let got = s
        .get_many(vec!["c".into(), "missing".into(), "a".into(), "b".into()])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(("c".to_string(), vec![])),
            None,
            Some(("a".to_string(), b"3".to_vec())),
            Some(("b".to_string(), b"2".to_vec())),
        ]
    );
    assert_eq!(all_keys(&*s, 2).await, vec!["a", "b", "c"]);
    s.delete_many(vec!["a".into(), "missing".into(), "c".into()])
        .await
        .unwrap();
    assert_eq!(all_keys(&*s, 2).await, vec!["b"]);
    let got = s.get_many(vec!["a".into(), "b".into()]).await.unwrap();
    assert_eq!(got, vec![None, Some(("b".to_string(), b"2".to_vec()))]);
}

async fn stores_and_namespaces_are_isolated(e: Arc<Engine>) {
    let p = e.kv().await;
    let names = ["iso", "iso2", "iso:x", "iso.x", "iso_x", "iso{x}", "iso x"];
    for name in names {
        p.open(name)
            .unwrap()
            .set("k", name.as_bytes().to_vec())
            .await
            .unwrap();
        p.open(name).unwrap().increment("n", 1).await.unwrap();
    }
    for name in names {
        let s = p.open(name).unwrap();
        assert_eq!(
            s.get("k").await.unwrap(),
            Some(name.as_bytes().to_vec()),
            "{name}"
        );
        assert_eq!(s.increment("n", 0).await.unwrap(), 1, "{name}");
        assert_eq!(all_keys(&*s, 10).await, vec!["k", "n"], "{name}");
    }
    // Another namespace (another app) sees none of it.
    let other = e.kv_in(&e.other_namespace()).await;
    let s = other.open("iso").unwrap();
    assert_eq!(s.get("k").await.unwrap(), None);
    assert!(all_keys(&*s, 10).await.is_empty());
    s.set("k", b"theirs".to_vec()).await.unwrap();
    assert_eq!(
        p.open("iso").unwrap().get("k").await.unwrap().as_deref(),
        Some(&b"iso"[..])
    );
}

async fn data_survives_reopening_the_provider(e: Arc<Engine>) {
    {
        let p = e.kv().await;
        let s = p.open("durable").unwrap();
        s.set("k", b"v".to_vec()).await.unwrap();
        s.increment("n", 3).await.unwrap();
        s.set_many(vec![("x".into(), vec![1]), ("y".into(), vec![2])])
            .await
            .unwrap();
    }
    e.forget();
    let p = e.kv().await;
    let s = p.open("durable").unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(s.increment("n", 1).await.unwrap(), 4);
    assert_eq!(all_keys(&*s, 10).await, vec!["k", "n", "x", "y"]);
}

conformance!(
    set_get_delete_exists,
    binary_values_and_odd_keys,
    list_keys_in_order_with_cursor_pages,
    increment_semantics,
    concurrent_increments_sum_exactly,
    compare_and_swap_semantics,
    compare_and_swap_races_have_one_winner,
    many_at_once,
    stores_and_namespaces_are_isolated,
    data_survives_reopening_the_provider,
);
