//! `node.toml`: the runtime configuration of a long-running node
//! (`gust serve --config node.toml`), kept apart from the app so the same
//! app runs unchanged on a laptop and on a server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ManifestError;

/// A node's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The app folder to serve (relative to the config file); not used in
    /// a cluster, whose nodes serve every app deployed to it.
    #[serde(default)]
    pub app: Option<PathBuf>,
    /// `[cluster]`: join a cluster of nodes sharing NATS and PostgreSQL.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Where a cluster node keeps the apps deployed to it (relative to the
    /// config file; default `.gust-node` beside it).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Reuse instances between requests (faster; weaker isolation).
    #[serde(default)]
    pub reuse_instances: bool,
    /// Use the pooling allocator.
    #[serde(default = "yes")]
    pub pooling: bool,
    /// Watch the app and hot-reload.
    #[serde(default)]
    pub watch: bool,
    /// Keep queues and topics on NATS JetStream at this URL instead of the
    /// embedded store (the same as `[backends] nats`, kept for old configs).
    #[serde(default)]
    pub nats_url: Option<String>,
    /// `[backends]`: which engine serves which resource.
    #[serde(default)]
    pub backends: Backends,
    /// Where the embedded MQTT broker listens (when a function needs it).
    #[serde(default = "default_mqtt_listen")]
    pub mqtt_listen: SocketAddr,
    /// Where to also serve Prometheus metrics without a key
    /// (`GET /metrics`); none unless set. One-app nodes only.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Export a span per invocation with OTLP/HTTP to this collector
    /// (`<url>/v1/traces`); `--otlp-endpoint` wins, and without either
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is read.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces sampled (0 to 1, default 1);
    /// `--trace-sample` wins, and without either `OTEL_TRACES_SAMPLER_ARG`
    /// is read.
    #[serde(default)]
    pub trace_sample: Option<f64>,
    /// `tls = { cert = "cert.pem", key = "key.pem" }`: serve HTTPS
    /// (paths relative to the config file).
    #[serde(default)]
    pub tls: Option<NodeTls>,
    /// Time a client has to send a request head (default `"10s"`).
    #[serde(default = "default_header_timeout", with = "duration_text")]
    pub header_timeout: std::time::Duration,
    /// Connections idle this long are closed (default `"60s"`).
    #[serde(default = "default_idle_timeout", with = "duration_text")]
    pub idle_timeout: std::time::Duration,
    /// How much event input is kept for `gust replay`, in all (default
    /// `"32MiB"`; `"0"` keeps none).
    #[serde(default = "default_replay_max_bytes", with = "size_text")]
    pub replay_max_bytes: u64,
    /// How long event input is kept for `gust replay` (default `"1h"`).
    #[serde(default = "default_replay_max_age", with = "duration_text")]
    pub replay_max_age: std::time::Duration,
}

/// `tls` of a node config: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

fn default_header_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn default_idle_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn default_replay_max_bytes() -> u64 {
    32 << 20
}

fn default_replay_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

/// Sizes written as text (`"32MiB"`).
mod size_text {
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::parse_size(&text).map_err(serde::de::Error::custom)
    }
}

/// Durations written as text (`"30s"`).
mod duration_text {
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// `[backends]` of a node config: `nats` and `postgres` move every resource
/// those engines serve; a key per resource (`queue`, `topic`, `stream`, `kv`,
/// `table`, `sql`, `blob`, `lease`, `broadcast`) moves that one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Backends {
    /// NATS server URL.
    #[serde(default)]
    pub nats: Option<String>,
    /// PostgreSQL URL.
    #[serde(default)]
    pub postgres: Option<String>,
    /// Resource name -> engine URL.
    #[serde(flatten)]
    pub resources: std::collections::BTreeMap<String, String>,
}

/// `[cluster]` of a node config: the nodes with the same `name` on the same
/// NATS and PostgreSQL form one cluster (many clusters can share them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: letters, digits, `-` and `_`.
    pub name: String,
    /// NATS server URL (queues, topics, streams, kv, leases, broadcast).
    pub nats: String,
    /// PostgreSQL URL (deployments, node heartbeats, sql, tables).
    pub postgres: String,
    /// A file holding the admin key, the same on every node (relative to
    /// the config file; created with a new key when missing).
    pub admin_key_file: PathBuf,
}

impl ClusterConfig {
    /// Checks the name (it becomes part of engine names).
    pub fn validate(&self) -> Result<(), String> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "cluster name `{}` must be 1 to 32 letters, digits, `-` or `_`",
                self.name
            ))
        }
    }
}

fn default_mqtt_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1884))
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7070))
}

fn yes() -> bool {
    true
}

impl NodeConfig {
    /// Reads `path`; a relative `app` is resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ManifestError::at(
                path,
                "",
                None,
                "",
                format!("cannot read the node config: {e}"),
                "pass an existing file to --config",
            )
        })?;
        let mut config: NodeConfig = toml::from_str(&source).map_err(|e| {
            ManifestError::at(
                path,
                &source,
                e.span(),
                "",
                e.message().trim(),
                "keys: listen = \"127.0.0.1:7070\", app = \"path\", data_dir, reuse_instances, pooling, watch, nats_url, mqtt_listen = \"127.0.0.1:1884\", metrics_listen = \"127.0.0.1:9464\", otlp_endpoint = \"http://127.0.0.1:4318\", trace_sample = 0.1, tls = { cert = \"cert.pem\", key = \"key.pem\" }, header_timeout = \"10s\", idle_timeout = \"60s\", replay_max_bytes = \"32MiB\", replay_max_age = \"1h\", [backends] nats/postgres/queue/topic/stream/kv/table/sql/blob/lease/broadcast = \"URL\", [cluster] name/nats/postgres/admin_key_file",
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(app) = config.app.as_mut() {
            resolve(app);
        }
        if let Some(dir) = config.data_dir.as_mut() {
            resolve(dir);
        }
        let problem = match &mut config.cluster {
            Some(cluster) => {
                resolve(&mut cluster.admin_key_file);
                cluster
                    .validate()
                    .err()
                    .map(|e| (e, "[cluster] name = \"prod\""))
            }
            None if config.app.is_none() => Some((
                "the node config names no app and no [cluster]".to_string(),
                "add app = \"path/to/app\", or a [cluster] table (name, nats, postgres, admin_key_file)",
            )),
            None => None,
        };
        if let Some((message, fix)) = problem {
            return Err(ManifestError::at(path, &source, None, "", message, fix));
        }
        if let Some(tls) = config.tls.as_mut() {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_with_defaults_and_resolves_app() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, "app = \"apps/hello\"\n").unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.app, Some(dir.path().join("apps/hello")));
        assert!(c.pooling && !c.reuse_instances && !c.watch);
        std::fs::write(
            &p,
            "app = \"x\"\ntls = { cert = \"c.pem\", key = \"/k.pem\" }\nidle_timeout = \"5s\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("c.pem"));
        assert_eq!(tls.key, Path::new("/k.pem"));
        assert_eq!(c.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.header_timeout, std::time::Duration::from_secs(10));
        std::fs::write(&p, "app = \"x\"\nheader_timeout = \"soon\"\n").unwrap();
        assert_eq!(NodeConfig::load(&p).unwrap_err().line, 2);
        std::fs::write(&p, "app = \"x\"\nlisten = \"nope\"\n").unwrap();
        assert_eq!(NodeConfig::load(&p).unwrap_err().line, 2);
    }

    #[test]
    fn a_cluster_node_needs_no_app_but_a_valid_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:7071\"\n[cluster]\nname = \"prod\"\nnats = \"nats://127.0.0.1:4222\"\npostgres = \"postgres://127.0.0.1:5432/test\"\nadmin_key_file = \"admin.key\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.name, "prod");
        assert_eq!(cluster.admin_key_file, dir.path().join("admin.key"));
        assert!(c.app.is_none());
        std::fs::write(&p, "[cluster]\nname = \"no way\"\nnats = \"n\"\npostgres = \"p\"\nadmin_key_file = \"k\"\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(e.to_string().contains("cluster name"), "{e}");
        std::fs::write(&p, "listen = \"127.0.0.1:7071\"\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err();
        assert!(e.to_string().contains("no app and no [cluster]"), "{e}");
    }
}
