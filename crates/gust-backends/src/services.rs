//! The composition root: every resource's provider, chosen once from the
//! runtime configuration.
//!
//! [`BackendConfig`] says which engine serves which resource (`--nats`,
//! `--postgres`, `--backend RESOURCE=URL`, or `[backends]` in `node.toml`);
//! [`Services::open`] connects to each engine once and hands out trait
//! objects only. The host, the triggers and the bindings never name an
//! engine: adding one is a module behind the traits plus its arm in
//! [`Services::open`].
//!
//! How a resource's engine is chosen, first match wins:
//! 1. an explicit `RESOURCE=URL` override (its scheme names the engine);
//! 2. `nats` when given and the resource is one NATS serves
//!    ([`Resource::on_nats`]);
//! 3. `postgres` when given and the resource is one PostgreSQL serves
//!    ([`Resource::on_postgres`]);
//! 4. the embedded engine, on disk under the app's `.gust/data/`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::embedded::{
    EmbeddedBlobs, EmbeddedKv, EmbeddedQueues, EmbeddedSql, EmbeddedStreams, EmbeddedTables,
    EmbeddedTopics,
};
use crate::{
    BackendError, BlobProvider, Broadcast, Dedupe, KeyValueProvider, KvLeases, Lease,
    QueueProvider, SqlProvider, StreamProvider, TableProvider, TopicProvider,
};

#[cfg(feature = "mysql")]
use crate::MySqlSql;
#[cfg(feature = "nats")]
use crate::nats::{
    NatsBroadcast, NatsQueues, NatsStreams,
    blob::NatsBlobs,
    kv::{NatsDedupe, NatsKv, NatsLeases},
};
#[cfg(feature = "postgres")]
use crate::postgres::{PgTables, dedupe::PgDedupe, kv::PgKv, lease::PgLeases, sql::PgSql};
#[cfg(feature = "redis")]
use crate::redis::{RedisDedupe, RedisKv, RedisLeases};
#[cfg(feature = "s3")]
use crate::s3::S3Blobs;

/// A kind of resource that an engine can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Work queues (and every trigger's dead letters).
    Queue,
    /// Publish/subscribe topics.
    Topic,
    /// Partitioned streams.
    Stream,
    /// Key-value stores (also timer status, receipts and checkpoints).
    Kv,
    /// Document tables and their change feeds.
    Table,
    /// SQL databases.
    Sql,
    /// Blob containers (and the blob trigger's source).
    Blob,
    /// Expiring claims (timer slots, partition owners).
    Lease,
    /// Signals to every node (server-sent events).
    Broadcast,
    /// "Seen this id already?" within a window (published events).
    Dedupe,
}

impl Resource {
    /// Every resource, in the order `gust up` lists them.
    pub const ALL: [Resource; 10] = [
        Resource::Queue,
        Resource::Topic,
        Resource::Stream,
        Resource::Kv,
        Resource::Table,
        Resource::Sql,
        Resource::Blob,
        Resource::Lease,
        Resource::Broadcast,
        Resource::Dedupe,
    ];

    /// The name used in `--backend RESOURCE=URL` and `[backends]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Queue => "queue",
            Resource::Topic => "topic",
            Resource::Stream => "stream",
            Resource::Kv => "kv",
            Resource::Table => "table",
            Resource::Sql => "sql",
            Resource::Blob => "blob",
            Resource::Lease => "lease",
            Resource::Broadcast => "broadcast",
            Resource::Dedupe => "dedupe",
        }
    }

    /// Whether `--nats` moves this resource to NATS.
    pub fn on_nats(self) -> bool {
        matches!(
            self,
            Resource::Queue
                | Resource::Topic
                | Resource::Stream
                | Resource::Kv
                | Resource::Lease
                | Resource::Broadcast
                | Resource::Dedupe
        )
    }

    /// Whether `--postgres` moves this resource to PostgreSQL (where
    /// `--nats` did not take it first).
    pub fn on_postgres(self) -> bool {
        matches!(
            self,
            Resource::Kv | Resource::Table | Resource::Sql | Resource::Lease | Resource::Dedupe
        )
    }

    /// The engines this build serves the resource on (URL schemes).
    pub fn engines(self) -> Vec<&'static str> {
        let mut out = vec!["embedded"];
        let mut add = |on: bool, scheme| {
            if on {
                out.push(scheme);
            }
        };
        use Resource::*;
        add(
            cfg!(feature = "nats")
                && matches!(
                    self,
                    Queue | Topic | Stream | Kv | Lease | Broadcast | Dedupe
                ),
            "nats",
        );
        add(
            cfg!(feature = "postgres") && matches!(self, Kv | Table | Lease | Dedupe),
            "postgres",
        );
        add(cfg!(feature = "postgres") && self == Sql, "postgres");
        add(cfg!(feature = "nats") && self == Blob, "nats");
        add(cfg!(feature = "s3") && self == Blob, "s3");
        add(cfg!(feature = "mysql") && self == Sql, "mysql");
        add(
            cfg!(feature = "redis") && matches!(self, Kv | Lease | Dedupe),
            "redis",
        );
        out
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ConfigError::UnknownResource(s.to_string()))
    }
}

/// A mistake in the backend configuration, found before connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--backend` named a resource that does not exist.
    #[error(
        "unknown resource `{0}`: choose one of queue, topic, stream, kv, table, sql, blob, lease, broadcast, dedupe"
    )]
    UnknownResource(String),
    /// `--backend` without `=`.
    #[error("`{0}` is not RESOURCE=URL (e.g. kv=redis://127.0.0.1:6379)")]
    NotAnOverride(String),
    /// The URL's engine does not serve the resource (or is not built in).
    #[error("{resource}: no engine for `{url}` (this build serves {resource} on: {engines})")]
    Unsupported {
        /// The resource.
        resource: Resource,
        /// The URL given.
        url: String,
        /// The schemes that would work.
        engines: String,
    },
}

/// Which engine serves each resource: the runtime configuration's
/// `[backends]` table, or `gust up --nats/--postgres/--backend`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendConfig {
    /// NATS server for every resource NATS serves.
    pub nats: Option<String>,
    /// PostgreSQL database for every resource PostgreSQL serves.
    pub postgres: Option<String>,
    /// One engine URL per resource, winning over `nats` and `postgres`.
    pub overrides: BTreeMap<Resource, String>,
}

impl BackendConfig {
    /// Adds a `RESOURCE=URL` override (as `--backend` takes it).
    pub fn add_override(&mut self, spec: &str) -> Result<(), ConfigError> {
        let (resource, url) = spec
            .split_once('=')
            .ok_or_else(|| ConfigError::NotAnOverride(spec.to_string()))?;
        self.overrides
            .insert(resource.trim().parse()?, url.trim().to_string());
        Ok(())
    }

    /// The engine that serves `resource`.
    pub fn engine_for(&self, resource: Resource) -> Result<Engine, ConfigError> {
        if let Some(url) = self.overrides.get(&resource) {
            return Engine::from_url(resource, url);
        }
        if let Some(url) = self.nats.as_ref().filter(|_| resource.on_nats()) {
            return Engine::from_url(resource, url);
        }
        if let Some(url) = self.postgres.as_ref().filter(|_| resource.on_postgres()) {
            return Engine::from_url(resource, url);
        }
        Ok(Engine::Embedded)
    }
}

/// An engine and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// In-process, on disk under the app's `.gust/`.
    Embedded,
    /// NATS JetStream (`nats://`).
    Nats(String),
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres(String),
    /// MariaDB or MySQL (`mysql://`, `mariadb://`).
    Mysql(String),
    /// Redis (`redis://`).
    Redis(String),
    /// An S3-compatible object store (`s3://bucket?endpoint=`).
    S3(String),
}

impl Engine {
    /// The engine `url` names, if it can serve `resource` in this build.
    pub fn from_url(resource: Resource, url: &str) -> Result<Self, ConfigError> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        let engine = match scheme {
            "embedded" => Engine::Embedded,
            "nats" => Engine::Nats(url.to_string()),
            "postgres" | "postgresql" => Engine::Postgres(url.to_string()),
            "mysql" | "mariadb" => Engine::Mysql(url.to_string()),
            "redis" => Engine::Redis(url.to_string()),
            "s3" => Engine::S3(url.to_string()),
            _ => Engine::Embedded,
        };
        let supported = resource.engines();
        if (scheme != "embedded" && engine == Engine::Embedded)
            || !supported.contains(&engine.scheme())
        {
            return Err(ConfigError::Unsupported {
                resource,
                url: url.to_string(),
                engines: supported
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(engine)
    }

    /// The engine's URL (none for the embedded engine).
    fn url(&self) -> Option<&str> {
        match self {
            Engine::Embedded => None,
            Engine::Nats(url)
            | Engine::Postgres(url)
            | Engine::Mysql(url)
            | Engine::Redis(url)
            | Engine::S3(url) => Some(url),
        }
    }

    /// `embedded`, `nats`, `postgres`, ...
    pub fn scheme(&self) -> &'static str {
        match self {
            Engine::Embedded => "embedded",
            Engine::Nats(_) => "nats",
            Engine::Postgres(_) => "postgres",
            Engine::Mysql(_) => "mysql",
            Engine::Redis(_) => "redis",
            Engine::S3(_) => "s3",
        }
    }
}

/// A failure to bring a resource's engine up.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine could not be reached or opened.
    #[error("{resource} on {engine}: {error}")]
    Open {
        /// The resource.
        resource: Resource,
        /// The engine's URL (password hidden) or embedded file.
        engine: String,
        /// What went wrong (part of this error's message, so not a
        /// `source`: printing the chain would repeat it).
        error: BackendError,
    },
}

/// Every resource of one app, each from the engine chosen for it. Cheap to
/// clone (every field is shared).
#[derive(Clone)]
pub struct Services {
    /// Work queues, and the dead letters of every trigger.
    pub queues: Arc<dyn QueueProvider>,
    /// Topics.
    pub topics: Arc<dyn TopicProvider>,
    /// Streams.
    pub streams: Arc<dyn StreamProvider>,
    /// Key-value stores (the app's, and Gust's own `gust:` stores: timer
    /// status, blob receipts, change-feed checkpoints).
    pub kv: Arc<dyn KeyValueProvider>,
    /// Document tables with change feeds.
    pub tables: Arc<dyn TableProvider>,
    /// SQL databases.
    pub sql: Arc<dyn SqlProvider>,
    /// Blob containers.
    pub blobs: Arc<dyn BlobProvider>,
    /// Leases.
    pub leases: Arc<dyn Lease>,
    /// Signals to every node.
    pub broadcast: Arc<dyn Broadcast>,
    /// Published-event de-duplication.
    pub dedupe: Arc<dyn Dedupe>,
    engines: BTreeMap<Resource, String>,
}

/// The key-value store holding embedded leases (`:` keeps Gust's own stores
/// apart from user store names).
const LEASE_STORE: &str = "gust:leases";
/// Published events with the same source and id within this window are
/// dropped.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(600);
/// Most ids the embedded dedupe remembers.
const DEDUPE_MAX_KEYS: usize = 100_000;
/// Most bytes the embedded dedupe spends remembering them.
const DEDUPE_MAX_BYTES: usize = 16 << 20;

impl Services {
    /// Connects every resource of the app `namespace` (its name: engines keep
    /// apps apart by it) whose embedded data lives under `state_dir`
    /// (`<app>/.gust`). An engine that cannot be reached is an error naming
    /// the resource and the URL. Each engine is connected once and shared
    /// by the resources on it.
    pub async fn open(
        config: &BackendConfig,
        namespace: &str,
        state_dir: &Path,
    ) -> Result<Self, ServicesError> {
        let mut o = Opener {
            namespace,
            state_dir: state_dir.to_path_buf(),
            engines: BTreeMap::new(),
            embedded_kv: None,
            embedded_queues: None,
            shared: BTreeMap::new(),
        };
        let mut chosen = BTreeMap::new();
        for resource in Resource::ALL {
            chosen.insert(resource, config.engine_for(resource)?);
        }
        let engine = |r: Resource| chosen[&r].clone();
        Ok(Self {
            queues: o.queues(engine(Resource::Queue)).await?,
            topics: o.topics(engine(Resource::Topic)).await?,
            streams: o.streams(engine(Resource::Stream)).await?,
            kv: o.kv(engine(Resource::Kv)).await?,
            tables: o.tables(engine(Resource::Table)).await?,
            sql: o.sql(engine(Resource::Sql)).await?,
            blobs: o.blobs(engine(Resource::Blob)).await?,
            leases: o.leases(engine(Resource::Lease)).await?,
            broadcast: o.broadcast(engine(Resource::Broadcast)).await?,
            dedupe: o.dedupe(engine(Resource::Dedupe)).await?,
            engines: o.engines,
        })
    }

    /// Which engine serves each resource (`embedded (.gust/data/kv.redb)`,
    /// `nats://127.0.0.1:4222`, ...), in [`Resource::ALL`] order.
    pub fn engines(&self) -> impl Iterator<Item = (Resource, &str)> {
        self.engines.iter().map(|(r, e)| (*r, e.as_str()))
    }
}

/// Opens the providers, sharing one connection per engine URL.
struct Opener<'a> {
    namespace: &'a str,
    state_dir: PathBuf,
    engines: BTreeMap<Resource, String>,
    embedded_kv: Option<EmbeddedKv>,
    embedded_queues: Option<EmbeddedQueues>,
    /// The connections opened so far, by URL.
    shared: BTreeMap<String, Conn>,
}

/// A resource's engine, connected: the connection that every resource on
/// the same URL shares, or the embedded engine.
#[derive(Clone)]
enum Conn {
    /// In process, on disk under the app's `.gust/`.
    Embedded,
    /// A NATS server: the app's queues, which hold the client (boxed:
    /// they are large).
    #[cfg(feature = "nats")]
    Nats(Box<NatsQueues>),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// A Redis server.
    #[cfg(feature = "redis")]
    Redis(::redis::aio::ConnectionManager),
}

/// Where the embedded engine keeps `resource`, as `gust up` prints it.
fn embedded_label(resource: Resource) -> &'static str {
    match resource {
        Resource::Queue | Resource::Topic => "embedded (.gust/data/queues.redb)",
        Resource::Stream => "embedded (.gust/data/streams.redb)",
        Resource::Kv | Resource::Lease => "embedded (.gust/data/kv.redb)",
        Resource::Table => "embedded (.gust/data/tables.redb)",
        Resource::Sql => "embedded (.gust/data/sql/)",
        Resource::Blob => "embedded (.gust/blobs/)",
        Resource::Broadcast | Resource::Dedupe => "embedded (in process)",
    }
}

/// Wraps a failure to open `resource` on `engine`.
fn failed(resource: Resource, engine: &str) -> impl FnOnce(BackendError) -> ServicesError {
    let engine = redact(engine);
    move |error| ServicesError::Open {
        resource,
        engine,
        error,
    }
}

impl Opener<'_> {
    fn data(&self, file: &str) -> PathBuf {
        self.state_dir.join("data").join(file)
    }

    /// Records which engine serves `resource` (the one place that does),
    /// and hands the engine back.
    fn record(&mut self, resource: Resource, engine: Engine) -> Engine {
        let label = match engine.url() {
            Some(url) => redact(url),
            None => embedded_label(resource).to_string(),
        };
        self.engines.insert(resource, label);
        engine
    }

    /// Wraps a failure of `resource` on the engine recorded for it.
    fn failure(&self, resource: Resource) -> impl FnOnce(BackendError) -> ServicesError {
        let engine = self.engines[&resource].clone();
        move |error| ServicesError::Open {
            resource,
            engine,
            error,
        }
    }

    /// Records `engine` for `resource` and connects it, reusing the
    /// connection of an earlier resource on the same URL.
    async fn connect(&mut self, resource: Resource, engine: Engine) -> Result<Conn, ServicesError> {
        let engine = self.record(resource, engine);
        let Some(url) = engine.url() else {
            return Ok(Conn::Embedded);
        };
        if let Some(conn) = self.shared.get(url) {
            return Ok(conn.clone());
        }
        let conn = match &engine {
            #[cfg(feature = "nats")]
            Engine::Nats(url) => Conn::Nats(Box::new(
                NatsQueues::connect(url, &nats_prefix(self.namespace))
                    .await
                    .map_err(failed(resource, url))?,
            )),
            #[cfg(feature = "postgres")]
            Engine::Postgres(url) => Conn::Postgres(
                crate::postgres::connect(url)
                    .await
                    .map_err(failed(resource, url))?,
            ),
            #[cfg(feature = "redis")]
            Engine::Redis(url) => Conn::Redis(
                crate::redis::connect(url)
                    .await
                    .map_err(failed(resource, url))?,
            ),
            // None: `Engine::from_url` refuses the engines that do not serve
            // `resource` in this build, and MySQL and S3 serve only sql and
            // blob, which connect by themselves.
            _ => Conn::Embedded,
        };
        self.shared.insert(url.to_string(), conn.clone());
        Ok(conn)
    }

    fn embedded_kv(&mut self, resource: Resource) -> Result<EmbeddedKv, ServicesError> {
        if self.embedded_kv.is_none() {
            let kv = EmbeddedKv::open(&self.data("kv.redb"))
                .map_err(failed(resource, "embedded kv.redb"))?;
            self.embedded_kv = Some(kv);
        }
        Ok(self.embedded_kv.clone().expect("opened above"))
    }

    fn embedded_queues(&mut self, resource: Resource) -> Result<EmbeddedQueues, ServicesError> {
        if self.embedded_queues.is_none() {
            let queues = EmbeddedQueues::open(&self.data("queues.redb"))
                .map_err(failed(resource, "embedded queues.redb"))?;
            self.embedded_queues = Some(queues);
        }
        Ok(self.embedded_queues.clone().expect("opened above"))
    }

    async fn queues(&mut self, engine: Engine) -> Result<Arc<dyn QueueProvider>, ServicesError> {
        let r = Resource::Queue;
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => Arc::new(*nats),
            _ => Arc::new(self.embedded_queues(r)?),
        })
    }

    async fn topics(&mut self, engine: Engine) -> Result<Arc<dyn TopicProvider>, ServicesError> {
        let r = Resource::Topic;
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => Arc::new(*nats),
            _ => Arc::new(
                EmbeddedTopics::new(self.embedded_queues(r)?)
                    .map_err(failed(r, "embedded queues.redb"))?,
            ),
        })
    }

    async fn streams(&mut self, engine: Engine) -> Result<Arc<dyn StreamProvider>, ServicesError> {
        let r = Resource::Stream;
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => Arc::new(
                NatsStreams::with_client(nats.client(), &nats_prefix(self.namespace))
                    .map_err(self.failure(r))?,
            ),
            _ => Arc::new(
                EmbeddedStreams::open(&self.data("streams.redb"))
                    .map_err(failed(r, "embedded streams.redb"))?,
            ),
        })
    }

    async fn kv(&mut self, engine: Engine) -> Result<Arc<dyn KeyValueProvider>, ServicesError> {
        let r = Resource::Kv;
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => Arc::new(NatsKv::with_context(jetstream(&nats), self.namespace)),
            #[cfg(feature = "postgres")]
            Conn::Postgres(pool) => Arc::new(
                PgKv::with_pool(pool, self.namespace)
                    .await
                    .map_err(self.failure(r))?,
            ),
            #[cfg(feature = "redis")]
            Conn::Redis(conn) => Arc::new(RedisKv::with_connection(conn, self.namespace)),
            _ => Arc::new(self.embedded_kv(r)?),
        })
    }

    async fn tables(&mut self, engine: Engine) -> Result<Arc<dyn TableProvider>, ServicesError> {
        let r = Resource::Table;
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "postgres")]
            Conn::Postgres(pool) => Arc::new(
                PgTables::with_pool(pool, self.namespace)
                    .await
                    .map_err(self.failure(r))?,
            ),
            _ => Arc::new(
                EmbeddedTables::open(&self.data("tables.redb"))
                    .map_err(failed(r, "embedded tables.redb"))?,
            ),
        })
    }

    /// SQL databases connect by themselves (a pool per database, and the
    /// URL may name a schema), so they share no connection.
    async fn sql(&mut self, engine: Engine) -> Result<Arc<dyn SqlProvider>, ServicesError> {
        let r = Resource::Sql;
        Ok(match self.record(r, engine) {
            #[cfg(feature = "postgres")]
            Engine::Postgres(url) => Arc::new(
                PgSql::connect(&url, self.namespace)
                    .await
                    .map_err(self.failure(r))?,
            ),
            #[cfg(feature = "mysql")]
            Engine::Mysql(url) => Arc::new(
                MySqlSql::connect(&url, self.namespace)
                    .await
                    .map_err(self.failure(r))?,
            ),
            _ => Arc::new(EmbeddedSql::new(&self.data("sql"))),
        })
    }

    /// Blob containers connect by themselves, so they share no connection.
    async fn blobs(&mut self, engine: Engine) -> Result<Arc<dyn BlobProvider>, ServicesError> {
        let r = Resource::Blob;
        Ok(match self.record(r, engine) {
            #[cfg(feature = "s3")]
            Engine::S3(url) => Arc::new(
                S3Blobs::connect(&url, self.namespace)
                    .await
                    .map_err(self.failure(r))?,
            ),
            #[cfg(feature = "nats")]
            Engine::Nats(url) => Arc::new(
                NatsBlobs::connect(&url, &nats_prefix(self.namespace))
                    .await
                    .map_err(self.failure(r))?,
            ),
            _ => Arc::new(EmbeddedBlobs::new(&self.state_dir.join("blobs"))),
        })
    }

    async fn leases(&mut self, engine: Engine) -> Result<Arc<dyn Lease>, ServicesError> {
        let r = Resource::Lease;
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => {
                Arc::new(NatsLeases::with_context(jetstream(&nats), self.namespace))
            }
            #[cfg(feature = "postgres")]
            Conn::Postgres(pool) => Arc::new(
                PgLeases::with_pool(pool, self.namespace)
                    .await
                    .map_err(self.failure(r))?,
            ),
            #[cfg(feature = "redis")]
            Conn::Redis(conn) => Arc::new(RedisLeases::with_connection(conn, self.namespace)),
            _ => Arc::new(KvLeases::new(
                self.embedded_kv(r)?
                    .open(LEASE_STORE)
                    .map_err(failed(r, "embedded kv.redb"))?,
            )),
        })
    }

    async fn broadcast(&mut self, engine: Engine) -> Result<Arc<dyn Broadcast>, ServicesError> {
        Ok(match self.connect(Resource::Broadcast, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => Arc::new(NatsBroadcast::new(
                nats.client(),
                &nats_prefix(self.namespace),
            )),
            _ => Arc::new(crate::embedded::LocalBroadcast::default()),
        })
    }

    async fn dedupe(&mut self, engine: Engine) -> Result<Arc<dyn Dedupe>, ServicesError> {
        let (r, window) = (Resource::Dedupe, DEDUPE_WINDOW);
        Ok(match self.connect(r, engine).await? {
            #[cfg(feature = "nats")]
            Conn::Nats(nats) => Arc::new(NatsDedupe::with_context(
                jetstream(&nats),
                self.namespace,
                window,
            )),
            #[cfg(feature = "postgres")]
            Conn::Postgres(pool) => Arc::new(
                PgDedupe::with_pool(pool, self.namespace, window)
                    .await
                    .map_err(self.failure(r))?,
            ),
            #[cfg(feature = "redis")]
            Conn::Redis(conn) => {
                Arc::new(RedisDedupe::with_connection(conn, self.namespace, window))
            }
            _ => Arc::new(crate::embedded::EmbeddedDedupe::new(
                window,
                DEDUPE_MAX_KEYS,
                DEDUPE_MAX_BYTES,
            )),
        })
    }
}

/// A JetStream context on the client of `nats`.
#[cfg(feature = "nats")]
fn jetstream(nats: &NatsQueues) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(nats.client())
}

/// `url` without a password, for printing.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Name prefix of an app's streams and subjects on NATS (`gust_<app>`, `-`
/// as `_`): the providers keep its `_`, so app `shop-api`'s queue `orders` is
/// the JetStream stream `GUST_SHOP_API_Q_orders` on subject
/// `gust_shop_api.q.orders`.
pub fn nats_prefix(app: &str) -> String {
    format!("gust_{}", app.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_then_nats_then_embedded() {
        let mut config = BackendConfig {
            nats: Some("nats://127.0.0.1:4222".into()),
            ..BackendConfig::default()
        };
        assert_eq!(
            config.engine_for(Resource::Queue).unwrap(),
            Engine::Nats("nats://127.0.0.1:4222".into())
        );
        assert_eq!(config.engine_for(Resource::Sql).unwrap(), Engine::Embedded);
        config.add_override("queue=embedded://").unwrap();
        assert_eq!(
            config.engine_for(Resource::Queue).unwrap(),
            Engine::Embedded
        );
    }

    #[test]
    fn bad_overrides_name_the_resource_and_url() {
        let mut config = BackendConfig::default();
        assert!(matches!(
            config.add_override("cache=redis://x"),
            Err(ConfigError::UnknownResource(_))
        ));
        assert!(matches!(
            config.add_override("kv"),
            Err(ConfigError::NotAnOverride(_))
        ));
        config.add_override("table=ftp://x").unwrap();
        let err = config.engine_for(Resource::Table).unwrap_err().to_string();
        assert!(err.contains("table") && err.contains("ftp://x"), "{err}");
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn an_unreachable_engine_names_the_resource_and_hides_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BackendConfig::default();
        config
            .add_override("kv=redis://user:secret@127.0.0.1:1")
            .unwrap();
        let err = Services::open(&config, "t", dir.path())
            .await
            .err()
            .expect("port 1 refuses")
            .to_string();
        assert!(
            err.starts_with("kv on redis://user:***@127.0.0.1:1"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn printed_urls_hide_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
