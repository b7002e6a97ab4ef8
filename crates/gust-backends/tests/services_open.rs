//! [`Services::open`] on the real engines at 127.0.0.1: every resource on
//! the engine chosen for it, working, and listed the way `gust up` prints
//! it (passwords hidden). Each test uses an app name of its own and
//! deletes what it stored.
#![cfg(all(
    feature = "nats",
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "s3"
))]

use gust_backends::{BackendConfig, Resource, Services};

#[path = "conformance_support/kv_engines.rs"]
mod engines;
mod s3_support;

use engines::{NATS_URL, REDIS_URL, unique_namespace};

const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";
/// The test database trusts every local connection, so any password
/// works: here one to see hidden.
const POSTGRES_URL: &str = "postgres://postgres:secret@127.0.0.1:5432/test";
const POSTGRES_SHOWN: &str = "postgres://postgres:***@127.0.0.1:5432/test";

/// Which engine serves each resource, in [`Resource::ALL`] order.
fn listed(services: &Services) -> Vec<(Resource, String)> {
    services
        .engines()
        .map(|(r, e)| (r, e.to_string()))
        .collect()
}

/// Stores a key and reads it back, and offers a new id to dedupe.
async fn kv_and_dedupe_work(services: &Services, namespace: &str) {
    let store = services.kv.open("roundtrip").unwrap();
    store.set("k", b"v".to_vec()).await.unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let id = format!("{namespace}/1");
    assert!(services.dedupe.first_seen(&id).await.unwrap());
    assert!(!services.dedupe.first_seen(&id).await.unwrap());
}

/// Deletes what app `namespace` stored on PostgreSQL, Redis and NATS.
async fn cleanup(namespace: &str) {
    let pool = gust_backends::postgres::connect(POSTGRES_URL)
        .await
        .unwrap();
    let schema = gust_backends::postgres::schema_name(namespace);
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    let redis = gust_backends::redis::connect(REDIS_URL).await.unwrap();
    gust_backends::redis::delete_namespace(&redis, namespace)
        .await
        .unwrap();
    gust_backends::nats::delete_app(NATS_URL, namespace)
        .await
        .unwrap();
}

#[tokio::test]
async fn embedded_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let services = Services::open(&BackendConfig::default(), "app", dir.path())
        .await
        .unwrap();
    let data = |file: &str| format!("embedded (.gust/data/{file})");
    assert_eq!(
        listed(&services),
        vec![
            (Resource::Queue, data("queues.redb")),
            (Resource::Topic, data("queues.redb")),
            (Resource::Stream, data("streams.redb")),
            (Resource::Kv, data("kv.redb")),
            (Resource::Table, data("tables.redb")),
            (Resource::Sql, data("sql/")),
            (Resource::Blob, "embedded (.gust/blobs/)".to_string()),
            (Resource::Lease, data("kv.redb")),
            (Resource::Broadcast, "embedded (in process)".to_string()),
            (Resource::Dedupe, "embedded (in process)".to_string()),
        ]
    );
    kv_and_dedupe_work(&services, "app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_first_then_postgres_then_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace();
    let bucket = s3_support::Bucket::create().await;
    let mut config = BackendConfig {
        nats: Some(NATS_URL.into()),
        postgres: Some(POSTGRES_URL.into()),
        ..BackendConfig::default()
    };
    config.add_override(&format!("kv={REDIS_URL}")).unwrap();
    config.add_override(&format!("sql={MYSQL_URL}")).unwrap();
    config
        .add_override(&format!("blob={}", bucket.url()))
        .unwrap();
    let services = Services::open(&config, &namespace, dir.path())
        .await
        .unwrap();
    let nats = NATS_URL.to_string();
    assert_eq!(
        listed(&services),
        vec![
            (Resource::Queue, nats.clone()),
            (Resource::Topic, nats.clone()),
            (Resource::Stream, nats.clone()),
            (Resource::Kv, REDIS_URL.to_string()),
            (Resource::Table, POSTGRES_SHOWN.to_string()),
            (Resource::Sql, MYSQL_URL.to_string()),
            (Resource::Blob, bucket.url()),
            (Resource::Lease, nats.clone()),
            (Resource::Broadcast, nats.clone()),
            (Resource::Dedupe, nats),
        ]
    );
    kv_and_dedupe_work(&services, &namespace).await;
    let container = services.blobs.container("box").unwrap();
    container.put("a.txt", b"x".to_vec()).await.unwrap();
    assert_eq!(
        container.get("a.txt").await.unwrap().as_deref(),
        Some(&b"x"[..])
    );
    drop(services);
    bucket.delete().await;
    cleanup(&namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_alone_and_an_override_with_the_password_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace();
    let mut config = BackendConfig {
        postgres: Some(POSTGRES_URL.into()),
        ..BackendConfig::default()
    };
    config.add_override(&format!("lease={REDIS_URL}")).unwrap();
    let services = Services::open(&config, &namespace, dir.path())
        .await
        .unwrap();
    let shown: Vec<_> = listed(&services)
        .into_iter()
        .filter(|(_, e)| !e.starts_with("embedded"))
        .collect();
    assert_eq!(
        shown,
        vec![
            (Resource::Kv, POSTGRES_SHOWN.to_string()),
            (Resource::Table, POSTGRES_SHOWN.to_string()),
            (Resource::Sql, POSTGRES_SHOWN.to_string()),
            (Resource::Lease, REDIS_URL.to_string()),
            (Resource::Dedupe, POSTGRES_SHOWN.to_string()),
        ]
    );
    kv_and_dedupe_work(&services, &namespace).await;
    drop(services);
    cleanup(&namespace).await;
}
