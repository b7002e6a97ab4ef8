//! One node of a cluster: serves the current version of every app deployed
//! to the cluster, follows deployments and rollbacks, and beats its heart so
//! the others know it is alive (and how many share the work).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use gust_host::keys::Keys;
use gust_host::{BackendConfig, Host, HostOptions};
use gust_manifest::ClusterConfig;
use gust_triggers::ownership::Membership;
use tokio::sync::Notify;

use crate::artifact;
use crate::store::{ClusterStore, Release};

/// How often a node records that it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node silent this long is dead: it drops out of `cluster status` and
/// its share of the work is spread over the others.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(6);

/// How often a node looks for new versions (a deploy to this node is
/// applied at once).
pub const SYNC: Duration = Duration::from_secs(1);

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The `[cluster]` table of `node.toml`.
    pub cluster: ClusterConfig,
    /// Where deployed apps are unpacked and their local state kept.
    pub data_dir: PathBuf,
    /// Which engine serves each resource (the cluster's NATS and PostgreSQL
    /// unless `[backends]` says otherwise).
    pub backends: BackendConfig,
    /// Reuse instances between requests.
    pub reuse_instances: bool,
    /// Use the pooling allocator.
    pub pooling: bool,
    /// Print function log lines to stderr.
    pub echo_logs: bool,
    /// How the node's listener treats connections (timeouts, TLS).
    pub serve: gust_host::ServeOptions,
    /// Where every app's invocation spans are exported, if anywhere.
    pub traces: Option<gust_host::otel::TraceConfig>,
    /// How much event input each app keeps for `gust replay`.
    pub replay: gust_host::replay::ReplayLimits,
}

/// An app version this node serves.
pub struct Serving {
    /// The version.
    pub version: u32,
    /// Its host.
    pub host: Arc<Host>,
}

/// A running node.
pub struct Node {
    id: String,
    addr: SocketAddr,
    options: NodeOptions,
    store: ClusterStore,
    admin_key: String,
    auth_throttle: gust_host::auth_throttle::AuthThrottle,
    membership: Arc<Membership>,
    apps: ArcSwap<BTreeMap<String, Arc<Serving>>>,
    /// The last error starting each app (version, message), logged once.
    failures: Mutex<BTreeMap<String, (u32, String)>>,
    synced: AtomicBool,
    wake: Notify,
    started: Instant,
}

impl Node {
    /// Joins the cluster: connects to its store, reads (or creates) the
    /// admin key, and serves on `addr` once [`Node::run`] runs.
    pub async fn join(options: NodeOptions, addr: SocketAddr) -> Result<Arc<Self>> {
        let store = ClusterStore::connect(&options.cluster.postgres, &options.cluster.name)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the cluster store on {}",
                    gust_backends::services::redact(&options.cluster.postgres)
                )
            })?;
        let admin_key = admin_key(&options.cluster.admin_key_file)?;
        let id = gust_host::host::node_name();
        let membership = Arc::new(Membership::new(&options.cluster.name, &id));
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("cannot create {}", options.data_dir.display()))?;
        Ok(Arc::new(Self {
            id,
            addr,
            options,
            store,
            admin_key,
            auth_throttle: Default::default(),
            membership,
            apps: ArcSwap::from_pointee(BTreeMap::new()),
            failures: Mutex::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
            wake: Notify::new(),
            started: Instant::now(),
        }))
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `http://addr` (`https://addr` when the listener serves TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.options.serve.scheme(), self.addr)
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.options.cluster.name
    }

    /// The cluster store.
    pub fn store(&self) -> &ClusterStore {
        &self.store
    }

    /// The admin key.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// Failed admin-key checks per client address.
    pub fn auth_throttle(&self) -> &gust_host::auth_throttle::AuthThrottle {
        &self.auth_throttle
    }

    /// The apps served now, by name.
    pub fn apps(&self) -> Arc<BTreeMap<String, Arc<Serving>>> {
        self.apps.load_full()
    }

    /// Whether the node has applied the cluster's deployments once.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Asks the sync loop to look at the store now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What this node tells the others in its heartbeat.
    pub fn describe(&self) -> serde_json::Value {
        let apps: BTreeMap<String, u32> = self
            .apps()
            .iter()
            .map(|(n, s)| (n.clone(), s.version))
            .collect();
        serde_json::json!({
            "apps": apps,
            "owns": self.membership.owned(),
            "uptime_seconds": self.started.elapsed().as_secs(),
        })
    }

    /// Beats and syncs until `stop` fires, then stops every app and leaves.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let beat = tokio::spawn(self.clone().beat(stop.clone()));
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the cluster's deployments; retrying");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(SYNC) => {}
            }
        }
        let _ = beat.await;
        for serving in self.apps().values() {
            serving.host.stop_triggers().await;
        }
        if let Err(e) = self.store.leave(&self.id).await {
            tracing::warn!(error = %e, "cannot remove this node from the cluster");
        }
    }

    /// Heartbeats until `stop`; keeps the live node count current.
    async fn beat(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let address = self.url();
            match self
                .store
                .heartbeat(&self.id, &address, &self.describe())
                .await
            {
                Ok(()) => match self.store.live_nodes(NODE_TIMEOUT).await {
                    Ok(nodes) => self
                        .membership
                        .set_live(nodes.into_iter().map(|n| n.id).collect()),
                    Err(e) => tracing::warn!(error = %e, "cannot list the cluster's nodes"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot record this node's heartbeat"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = tokio::time::sleep(HEARTBEAT) => {}
            }
        }
    }

    /// Brings every app to its current version.
    async fn sync(&self) -> Result<()> {
        let current = self.store.current().await?;
        for release in current.values() {
            let running = self.apps().get(&release.app).map(|s| s.version);
            if running == Some(release.version) {
                continue;
            }
            match self.start_release(release).await {
                Ok(host) => self.switch(release, host).await,
                Err(e) => {
                    let message = format!("{e:#}");
                    let mut failures = self.failures.lock().expect("failures lock");
                    let again =
                        failures.get(&release.app) == Some(&(release.version, message.clone()));
                    if !again {
                        tracing::error!(app = %release.app, version = release.version, "cannot start: {message}");
                        eprintln!(
                            "gust: app `{}` v{} cannot start on this node: {message}",
                            release.app, release.version
                        );
                        failures.insert(release.app.clone(), (release.version, message));
                    }
                }
            }
        }
        self.synced.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Routes `release.app` to `host` and retires the version it replaces:
    /// requests already in the old one finish there; its triggers stop
    /// (settling what they run) before the new version's start, so no
    /// partition is consumed twice on this node.
    async fn switch(&self, release: &Release, host: Arc<Host>) {
        let mut apps = (*self.apps()).clone();
        let old = apps.insert(
            release.app.clone(),
            Arc::new(Serving {
                version: release.version,
                host: host.clone(),
            }),
        );
        self.apps.store(Arc::new(apps));
        if let Some(old) = &old {
            old.host.stop_triggers().await;
        }
        if let Err(e) = host.start_triggers().await {
            tracing::error!(app = %release.app, "cannot start triggers: {e:#}");
            eprintln!(
                "gust: app `{}` v{}: triggers did not start: {e:#}",
                release.app, release.version
            );
        }
        self.failures
            .lock()
            .expect("failures lock")
            .remove(&release.app);
        let from = old
            .map(|o| format!(" (was v{})", o.version))
            .unwrap_or_default();
        eprintln!("gust: serving `{}` v{}{from}", release.app, release.version);
    }

    /// Unpacks (once) and starts a release's host, without its triggers.
    async fn start_release(&self, release: &Release) -> Result<Arc<Host>> {
        let app_root = self.options.data_dir.join("apps").join(&release.app);
        let version_dir = app_root.join(format!("v{}", release.version));
        if !version_dir
            .join("app")
            .join(gust_manifest::MANIFEST_FILE)
            .is_file()
        {
            let bytes = self.store.artifact(&release.app, release.version).await?;
            if artifact::digest(&bytes) != release.digest {
                bail!("the stored artifact does not match its digest");
            }
            let tmp = app_root.join(format!(".v{}-{}", release.version, std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            artifact::unpack(&bytes, &tmp)?;
            let _ = std::fs::remove_dir_all(&version_dir);
            std::fs::rename(&tmp, &version_dir)
                .with_context(|| format!("cannot move the app into {}", version_dir.display()))?;
        }
        let unpacked = artifact::Unpacked {
            app_dir: version_dir.join("app"),
            components: components_in(&version_dir.join("components")),
        };
        // Every version of an app shares one local state folder.
        let state = app_root.join("state");
        std::fs::create_dir_all(&state)?;
        let link = unpacked.app_dir.join(".gust");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(&state, &link)
                .with_context(|| format!("cannot link {}", link.display()))?;
        }
        let keys = self
            .store
            .keys(&release.app)
            .await?
            .context("the app's keys are missing from the cluster store; deploy it again")?;
        write_keys(&gust_host::keys::keys_path(&state), &keys)?;
        let app = gust_triggers::load_app(&unpacked.app_dir)?;
        let options = HostOptions {
            app_dir: unpacked.app_dir.clone(),
            listen: self.addr,
            watch: false,
            reuse_instances: self.options.reuse_instances,
            pooling: self.options.pooling,
            echo_logs: self.options.echo_logs,
            backends: self.options.backends.clone(),
            // Several apps (and versions) share the process: a free port
            // each, if one runs the embedded broker at all.
            mqtt_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster: Some(self.membership.clone()),
            serve: self.options.serve.clone(),
            traces: self.options.traces.clone(),
            replay: self.options.replay,
        };
        Host::start(options, self.addr, app, &unpacked.components).await
    }

    /// Makes sure `app` has keys in the store: the cluster's admin key, a
    /// host key and one per function (new functions get theirs, existing
    /// keys stay). Called by the node that receives a deploy, before the
    /// version becomes current.
    pub async fn ensure_keys(&self, app: &gust_manifest::App) -> Result<()> {
        let mut keys: Keys = match self.store.keys(&app.name).await? {
            Some(text) => serde_json::from_str(&text).context("the stored keys are damaged")?,
            None => Keys::default(),
        };
        let before = keys.clone();
        keys.admin = self.admin_key.clone();
        if keys.host.is_empty() {
            keys.host = gust_host::keys::new_key()?;
        }
        for f in &app.functions {
            if !keys.functions.contains_key(&f.name) {
                keys.functions
                    .insert(f.name.clone(), gust_host::keys::new_key()?);
            }
        }
        if keys != before {
            self.store
                .save_keys(&app.name, &serde_json::to_string(&keys)?)
                .await?;
        }
        Ok(())
    }
}

/// Function -> component in an unpacked artifact's `components/`.
fn components_in(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            out.insert(stem.to_string(), path.clone());
        }
    }
    out
}

/// Writes an app's keys file, readable only by this user.
fn write_keys(path: &Path, keys: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(keys.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads the admin key file, creating it with a new key when it is missing
/// (give every node the same file).
fn admin_key(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = text.trim().to_string();
            if key.len() < 16 {
                bail!(
                    "{} holds no admin key of at least 16 characters",
                    path.display()
                );
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = gust_host::keys::new_key()?;
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // `create_new`: when nodes start together, one writes the key
            // and the others read it.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(mut file) => {
                    file.write_all(format!("{key}\n").as_bytes())?;
                    file.sync_all()?;
                    eprintln!(
                        "gust: created the cluster's admin key in {} (copy it to every node)",
                        path.display()
                    );
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::thread::sleep(Duration::from_millis(100));
                    admin_key(path)
                }
                Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
