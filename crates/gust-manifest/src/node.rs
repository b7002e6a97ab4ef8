//! `node.toml`: the runtime configuration of a long-running node
//! (`gust serve --config node.toml`), kept apart from the app so the same
//! app runs unchanged on a laptop and on a server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ManifestError;

/// A node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The app folder to serve (relative to the config file).
    pub app: PathBuf,
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
                "keys: listen = \"127.0.0.1:7070\", app = \"path\", reuse_instances, pooling, watch, nats_url, mqtt_listen = \"127.0.0.1:1884\", [backends] nats/postgres/queue/topic/stream/kv/table/sql/blob/lease/broadcast = \"URL\"",
            )
        })?;
        if config.app.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.app = base.join(&config.app);
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
        assert_eq!(c.app, dir.path().join("apps/hello"));
        assert!(c.pooling && !c.reuse_instances && !c.watch);
        std::fs::write(&p, "app = \"x\"\nlisten = \"nope\"\n").unwrap();
        assert_eq!(NodeConfig::load(&p).unwrap_err().line, 2);
    }
}
