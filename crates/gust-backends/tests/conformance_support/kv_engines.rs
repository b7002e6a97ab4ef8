//! The engines the kv, lease and dedupe suites run on, each under a
//! namespace no other test (or earlier run) uses, deleted after the case:
//! embedded (a temporary directory), PostgreSQL, Redis and NATS JetStream
//! on 127.0.0.1 (features `postgres`, `redis`, `nats`).
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gust_backends::embedded::{EmbeddedDedupe, EmbeddedKv};
use gust_backends::{Dedupe, KeyValueProvider, KvLeases, Lease};

pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// A namespace no other test (or earlier run) uses.
pub fn unique_namespace() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}x{}x{n}", std::process::id(), nanos % 1_000_000_000)
}

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Postgres,
    Redis,
    Nats,
}

/// One engine under one test namespace (and a second one, `other`, to
/// check isolation).
pub struct Engine {
    pub kind: Kind,
    pub namespace: String,
    dir: tempfile::TempDir,
    /// The embedded kv file open now, per namespace.
    embedded: Mutex<Vec<(String, EmbeddedKv)>>,
    embedded_dedupe: Mutex<Option<Arc<EmbeddedDedupe>>>,
}

impl Engine {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            namespace: unique_namespace(),
            dir: tempfile::tempdir().unwrap(),
            embedded: Mutex::default(),
            embedded_dedupe: Mutex::default(),
        }
    }

    /// The second namespace of this test.
    pub fn other_namespace(&self) -> String {
        format!("{}-other", self.namespace)
    }

    fn embedded_kv(&self, namespace: &str) -> EmbeddedKv {
        if let Some((_, kv)) = self
            .embedded
            .lock()
            .unwrap()
            .iter()
            .find(|(ns, _)| ns == namespace)
        {
            return kv.clone();
        }
        // One file per app (namespace), as the host lays it out. A file
        // closed just before stays locked until its writer thread ends.
        let path = self.dir.path().join(namespace).join(".gust/data/kv.redb");
        let end = Instant::now() + Duration::from_secs(5);
        let kv = loop {
            match EmbeddedKv::open(&path) {
                Ok(kv) => break kv,
                Err(e) if Instant::now() > end => panic!("cannot reopen {path:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        self.embedded
            .lock()
            .unwrap()
            .push((namespace.to_string(), kv.clone()));
        kv
    }

    /// A kv provider of `namespace` (a new connection each time).
    pub async fn kv_in(&self, namespace: &str) -> Arc<dyn KeyValueProvider> {
        match self.kind {
            Kind::Embedded => Arc::new(self.embedded_kv(namespace)),
            #[cfg(feature = "postgres")]
            Kind::Postgres => Arc::new(
                gust_backends::postgres::kv::PgKv::connect(POSTGRES_URL, namespace)
                    .await
                    .expect("PostgreSQL must run at 127.0.0.1:5432"),
            ),
            #[cfg(feature = "redis")]
            Kind::Redis => Arc::new(
                gust_backends::redis::RedisKv::connect(REDIS_URL, namespace)
                    .await
                    .expect("Redis must run at 127.0.0.1:6379"),
            ),
            #[cfg(feature = "nats")]
            Kind::Nats => Arc::new(
                gust_backends::nats::kv::NatsKv::connect(NATS_URL, namespace)
                    .await
                    .expect("NATS with JetStream must run at 127.0.0.1:4222"),
            ),
            #[allow(unreachable_patterns)]
            other => panic!("{other:?} is not built in"),
        }
    }

    /// A kv provider of the test namespace.
    pub async fn kv(&self) -> Arc<dyn KeyValueProvider> {
        self.kv_in(&self.namespace.clone()).await
    }

    /// Forgets the open embedded files, so the next provider opens them
    /// again (engines connect anew every time anyway). Every provider and
    /// store of before must have been dropped.
    pub fn forget(&self) {
        self.embedded.lock().unwrap().clear();
    }

    /// A lease provider of the test namespace: each call a new connection,
    /// standing for another node (embedded: the same file, one process).
    pub async fn leases(&self) -> Arc<dyn Lease> {
        match self.kind {
            Kind::Embedded => {
                let kv = self.embedded_kv(&self.namespace);
                Arc::new(KvLeases::new(kv.open("gust:leases").unwrap()))
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres => Arc::new(
                gust_backends::postgres::lease::PgLeases::connect(POSTGRES_URL, &self.namespace)
                    .await
                    .unwrap(),
            ),
            #[cfg(feature = "redis")]
            Kind::Redis => Arc::new(
                gust_backends::redis::RedisLeases::connect(REDIS_URL, &self.namespace)
                    .await
                    .unwrap(),
            ),
            #[cfg(feature = "nats")]
            Kind::Nats => Arc::new(
                gust_backends::nats::kv::NatsLeases::connect(NATS_URL, &self.namespace)
                    .await
                    .unwrap(),
            ),
            #[allow(unreachable_patterns)]
            other => panic!("{other:?} is not built in"),
        }
    }

    /// A dedupe of the test namespace remembering keys for `window`: each
    /// call a new connection, standing for another node (embedded: the
    /// same one, since it lives in one process's memory).
    pub async fn dedupe(&self, window: Duration) -> Arc<dyn Dedupe> {
        match self.kind {
            Kind::Embedded => self
                .embedded_dedupe
                .lock()
                .unwrap()
                .get_or_insert_with(|| Arc::new(EmbeddedDedupe::new(window, 100_000, 64 << 20)))
                .clone(),
            #[cfg(feature = "postgres")]
            Kind::Postgres => Arc::new(
                gust_backends::postgres::dedupe::PgDedupe::connect(
                    POSTGRES_URL,
                    &self.namespace,
                    window,
                )
                .await
                .unwrap(),
            ),
            #[cfg(feature = "redis")]
            Kind::Redis => Arc::new(
                gust_backends::redis::RedisDedupe::connect(REDIS_URL, &self.namespace, window)
                    .await
                    .unwrap(),
            ),
            #[cfg(feature = "nats")]
            Kind::Nats => Arc::new(
                gust_backends::nats::kv::NatsDedupe::connect(NATS_URL, &self.namespace, window)
                    .await
                    .unwrap(),
            ),
            #[allow(unreachable_patterns)]
            other => panic!("{other:?} is not built in"),
        }
    }

    /// Deletes what the test stored on the engine, in both namespaces.
    pub async fn cleanup(&self) {
        #[allow(unused_variables)] // with no engine feature
        for ns in [self.namespace.clone(), self.other_namespace()] {
            match self.kind {
                Kind::Embedded => {}
                #[cfg(feature = "postgres")]
                Kind::Postgres => {
                    let pool = gust_backends::postgres::connect(POSTGRES_URL)
                        .await
                        .unwrap();
                    let schema = gust_backends::postgres::schema_name(&ns);
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                #[cfg(feature = "redis")]
                Kind::Redis => {
                    let conn = gust_backends::redis::connect(REDIS_URL).await.unwrap();
                    gust_backends::redis::delete_namespace(&conn, &ns)
                        .await
                        .unwrap();
                }
                #[cfg(feature = "nats")]
                Kind::Nats => {
                    gust_backends::nats::kv::delete_namespace(NATS_URL, &ns)
                        .await
                        .unwrap();
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }
}

/// Runs `case` on a fresh namespace of `kind`, then cleans up, also when
/// the case panicked.
pub async fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(Arc<Engine>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let engine = Arc::new(Engine::new(kind));
    let result = tokio::spawn(case(engine.clone())).await;
    engine.cleanup().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One `#[tokio::test]` per case per engine built in.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::engines::run(super::engines::Kind::Embedded, super::$case).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::engines::run(super::engines::Kind::Postgres, super::$case).await;
                }
            )*
        }
        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::engines::run(super::engines::Kind::Redis, super::$case).await;
                }
            )*
        }
        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::engines::run(super::engines::Kind::Nats, super::$case).await;
                }
            )*
        }
    };
}
