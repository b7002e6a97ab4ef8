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

use crate::embedded::{
    EmbeddedBlobs, EmbeddedKv, EmbeddedQueues, EmbeddedSql, EmbeddedStreams, EmbeddedTables,
    EmbeddedTopics,
};
use crate::{
    BackendError, BlobProvider, Broadcast, KeyValueProvider, KvLeases, Lease, QueueProvider,
    SqlProvider, StreamProvider, TableProvider, TopicProvider,
};

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
}

impl Resource {
    /// Every resource, in the order `gust up` lists them.
    pub const ALL: [Resource; 9] = [
        Resource::Queue,
        Resource::Topic,
        Resource::Stream,
        Resource::Kv,
        Resource::Table,
        Resource::Sql,
        Resource::Blob,
        Resource::Lease,
        Resource::Broadcast,
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
        }
    }

    /// Whether `--nats` moves this resource to NATS.
    pub fn on_nats(self) -> bool {
        matches!(
            self,
            Resource::Queue | Resource::Topic | Resource::Broadcast
        )
    }

    /// Whether `--postgres` moves this resource to PostgreSQL.
    pub fn on_postgres(self) -> bool {
        false
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
        "unknown resource `{0}`: choose one of queue, topic, stream, kv, table, sql, blob, lease, broadcast"
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
        let supported = supported_engines(resource);
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

/// The engines this build serves `resource` on.
fn supported_engines(resource: Resource) -> Vec<&'static str> {
    let mut out = vec!["embedded"];
    if cfg!(feature = "nats") && resource.on_nats() {
        out.push("nats");
    }
    out
}

/// A failure to bring a resource's engine up.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine could not be reached or opened.
    #[error("{resource} on {engine}: {source}")]
    Open {
        /// The resource.
        resource: Resource,
        /// The engine's URL or embedded path.
        engine: String,
        /// What went wrong.
        source: BackendError,
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
    /// Key-value stores (the app's, and Gust's own `gust:` stores).
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
    engines: BTreeMap<Resource, String>,
}

/// The key-value store holding embedded leases (`:` keeps Gust's own stores
/// apart from user store names).
const LEASE_STORE: &str = "gust:leases";

impl Services {
    /// Connects every resource of the app `namespace` (its name: engines keep
    /// apps apart by it) whose embedded data lives under `state_dir`
    /// (`<app>/.gust`). An engine that cannot be reached is an error naming
    /// the resource and the URL.
    pub async fn open(
        config: &BackendConfig,
        namespace: &str,
        state_dir: &Path,
    ) -> Result<Self, ServicesError> {
        let mut opener = Opener {
            config,
            namespace,
            data: state_dir.join("data"),
            engines: BTreeMap::new(),
            embedded_kv: None,
            embedded_queues: None,
            #[cfg(feature = "nats")]
            nats: None,
        };
        let queues = opener.queues().await?;
        let topics = opener.topics().await?;
        let streams = opener.streams()?;
        let kv = opener.kv()?;
        let tables = opener.tables()?;
        let sql = opener.sql()?;
        let blobs = opener.blobs(state_dir)?;
        let leases = opener.leases()?;
        let broadcast = opener.broadcast()?;
        Ok(Self {
            queues,
            topics,
            streams,
            kv,
            tables,
            sql,
            blobs,
            leases,
            broadcast,
            engines: opener.engines,
        })
    }

    /// Which engine serves each resource (`embedded (.gust/data/kv.redb)`,
    /// `nats://127.0.0.1:4222`, ...), in [`Resource::ALL`] order.
    pub fn engines(&self) -> impl Iterator<Item = (Resource, &str)> {
        self.engines.iter().map(|(r, e)| (*r, e.as_str()))
    }
}

/// Opens the providers, sharing one connection per engine.
struct Opener<'a> {
    config: &'a BackendConfig,
    namespace: &'a str,
    data: PathBuf,
    engines: BTreeMap<Resource, String>,
    embedded_kv: Option<EmbeddedKv>,
    embedded_queues: Option<EmbeddedQueues>,
    #[cfg(feature = "nats")]
    nats: Option<(String, Arc<crate::nats::NatsQueues>)>,
}

impl Opener<'_> {
    fn engine(&self, resource: Resource) -> Result<Engine, ServicesError> {
        Ok(self.config.engine_for(resource)?)
    }

    fn failed(resource: Resource, engine: &str, source: BackendError) -> ServicesError {
        ServicesError::Open {
            resource,
            engine: engine.to_string(),
            source,
        }
    }

    /// Records that `resource` is served by the embedded file `file`.
    fn embedded(&mut self, resource: Resource, file: &str) {
        self.engines
            .insert(resource, format!("embedded (.gust/data/{file})"));
    }

    fn embedded_kv(&mut self, resource: Resource) -> Result<EmbeddedKv, ServicesError> {
        if self.embedded_kv.is_none() {
            let kv = EmbeddedKv::open(&self.data.join("kv.redb"))
                .map_err(|e| Self::failed(resource, "embedded kv.redb", e))?;
            self.embedded_kv = Some(kv);
        }
        Ok(self.embedded_kv.clone().expect("opened above"))
    }

    fn embedded_queues(&mut self, resource: Resource) -> Result<EmbeddedQueues, ServicesError> {
        if self.embedded_queues.is_none() {
            let queues = EmbeddedQueues::open(&self.data.join("queues.redb"))
                .map_err(|e| Self::failed(resource, "embedded queues.redb", e))?;
            self.embedded_queues = Some(queues);
        }
        Ok(self.embedded_queues.clone().expect("opened above"))
    }

    #[cfg(feature = "nats")]
    async fn nats(
        &mut self,
        resource: Resource,
        url: &str,
    ) -> Result<Arc<crate::nats::NatsQueues>, ServicesError> {
        if let Some((known, nats)) = &self.nats
            && known == url
        {
            return Ok(nats.clone());
        }
        let nats = Arc::new(
            crate::nats::NatsQueues::connect(url, &nats_prefix(self.namespace))
                .await
                .map_err(|e| Self::failed(resource, url, e))?,
        );
        self.nats = Some((url.to_string(), nats.clone()));
        Ok(nats)
    }

    async fn queues(&mut self) -> Result<Arc<dyn QueueProvider>, ServicesError> {
        let resource = Resource::Queue;
        match self.engine(resource)? {
            #[cfg(feature = "nats")]
            Engine::Nats(url) => {
                let nats = self.nats(resource, &url).await?;
                self.engines.insert(resource, url);
                Ok(nats)
            }
            _ => {
                self.embedded(resource, "queues.redb");
                Ok(Arc::new(self.embedded_queues(resource)?))
            }
        }
    }

    async fn topics(&mut self) -> Result<Arc<dyn TopicProvider>, ServicesError> {
        let resource = Resource::Topic;
        match self.engine(resource)? {
            #[cfg(feature = "nats")]
            Engine::Nats(url) => {
                let nats = self.nats(resource, &url).await?;
                self.engines.insert(resource, url);
                Ok(nats)
            }
            _ => {
                self.embedded(resource, "queues.redb");
                let queues = self.embedded_queues(resource)?;
                let topics = EmbeddedTopics::new(queues)
                    .map_err(|e| Self::failed(resource, "embedded queues.redb", e))?;
                Ok(Arc::new(topics))
            }
        }
    }

    fn streams(&mut self) -> Result<Arc<dyn StreamProvider>, ServicesError> {
        let resource = Resource::Stream;
        self.engine(resource)?;
        self.embedded(resource, "streams.redb");
        let streams = EmbeddedStreams::open(&self.data.join("streams.redb"))
            .map_err(|e| Self::failed(resource, "embedded streams.redb", e))?;
        Ok(Arc::new(streams))
    }

    fn kv(&mut self) -> Result<Arc<dyn KeyValueProvider>, ServicesError> {
        let resource = Resource::Kv;
        self.engine(resource)?;
        self.embedded(resource, "kv.redb");
        Ok(Arc::new(self.embedded_kv(resource)?))
    }

    fn tables(&mut self) -> Result<Arc<dyn TableProvider>, ServicesError> {
        let resource = Resource::Table;
        self.engine(resource)?;
        self.embedded(resource, "tables.redb");
        let tables = EmbeddedTables::open(&self.data.join("tables.redb"))
            .map_err(|e| Self::failed(resource, "embedded tables.redb", e))?;
        Ok(Arc::new(tables))
    }

    fn sql(&mut self) -> Result<Arc<dyn SqlProvider>, ServicesError> {
        let resource = Resource::Sql;
        self.engine(resource)?;
        self.embedded(resource, "sql/");
        Ok(Arc::new(EmbeddedSql::new(&self.data.join("sql"))))
    }

    fn blobs(&mut self, state_dir: &Path) -> Result<Arc<dyn BlobProvider>, ServicesError> {
        let resource = Resource::Blob;
        self.engine(resource)?;
        self.engines
            .insert(resource, "embedded (.gust/blobs/)".to_string());
        Ok(Arc::new(EmbeddedBlobs::new(&state_dir.join("blobs"))))
    }

    fn leases(&mut self) -> Result<Arc<dyn Lease>, ServicesError> {
        let resource = Resource::Lease;
        self.engine(resource)?;
        self.embedded(resource, "kv.redb");
        let store = self
            .embedded_kv(resource)?
            .open(LEASE_STORE)
            .map_err(|e| Self::failed(resource, "embedded kv.redb", e))?;
        Ok(Arc::new(KvLeases::new(store)))
    }

    fn broadcast(&mut self) -> Result<Arc<dyn Broadcast>, ServicesError> {
        let resource = Resource::Broadcast;
        match self.engine(resource)? {
            #[cfg(feature = "nats")]
            Engine::Nats(url) => {
                let client = self
                    .nats
                    .as_ref()
                    .filter(|(known, _)| *known == url)
                    .map(|(_, n)| n.client());
                let Some(client) = client else {
                    // Only reachable with `--backend broadcast=nats://other`:
                    // keep it simple and refuse rather than open a second client.
                    return Err(Self::failed(
                        resource,
                        &url,
                        BackendError::engine(
                            "nats broadcast",
                            "broadcast on NATS shares the queues' NATS server: put queues on the same URL",
                        ),
                    ));
                };
                self.engines.insert(resource, url);
                Ok(Arc::new(crate::nats::NatsBroadcast::new(
                    client,
                    &nats_prefix(self.namespace),
                )))
            }
            _ => {
                self.engines
                    .insert(resource, "embedded (in process)".to_string());
                Ok(Arc::new(crate::embedded::LocalBroadcast::default()))
            }
        }
    }
}

/// Name prefix of an app's streams and subjects on NATS (`gust_<app>`).
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
}
