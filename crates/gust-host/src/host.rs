//! A running host: one app, its runtime, logs, storage, and reload.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use gust_backends::mqtt::{EmbeddedBroker, EmbeddedBrokerConfig};
use gust_backends::{BackendConfig, Queue, QueueProvider, Services, StreamProvider};
use gust_manifest::App;
use gust_runtime::{LogLevel, LogSink, Runtime, RuntimeOptions};
use gust_triggers::ownership::Membership;
use gust_triggers::settings::Settings;
use gust_triggers::topic::TopicSettings;

use crate::app::{FunctionStats, LoadContext, LoadedApp, TriggerContext};

use crate::builder::{QuietProgress, build_app};
use crate::keys;
use crate::logs::LogHub;

/// How to run a host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The app folder.
    pub app_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Watch sources and hot-reload on change.
    pub watch: bool,
    /// Reuse instances between requests (faster; state can leak between
    /// requests of the same function).
    pub reuse_instances: bool,
    /// Use the pooling allocator when the machine allows it.
    pub pooling: bool,
    /// Print function log lines to stderr too.
    pub echo_logs: bool,
    /// Which engine serves each resource (embedded unless told otherwise).
    pub backends: BackendConfig,
    /// Where the embedded MQTT broker listens (started only when a function
    /// has an mqtt trigger on it).
    pub mqtt_listen: SocketAddr,
    /// The cluster this host's node belongs to (`gust serve` with
    /// `[cluster]`): its node name is then the host's lease holder, and
    /// single-owner work is spread over the nodes. `None` for one node.
    pub cluster: Option<Arc<Membership>>,
    /// How the host's own listener treats connections (timeouts, TLS).
    pub serve: crate::listener::ServeOptions,
    /// Where to export a span per invocation (OTLP/HTTP), if anywhere.
    pub traces: Option<crate::otel::TraceConfig>,
    /// How much event input is kept for `gust replay`.
    pub replay: crate::replay::ReplayLimits,
}

/// The state of a running host, shared by every connection.
pub struct Host {
    options: HostOptions,
    addr: SocketAddr,
    runtime: Runtime,
    logs: Arc<LogHub>,
    services: Services,
    node: String,
    mqtt: std::sync::Mutex<Option<EmbeddedBroker>>,
    current: ArcSwap<LoadedApp>,
    sse: Arc<crate::sse::SseHub>,
    stats: Mutex<HashMap<String, Arc<FunctionStats>>>,
    metrics: crate::metrics::FunctionRegistry,
    recent: crate::invocations::RecentInvocations,
    inputs: Arc<crate::replay::EventInputs>,
    started: std::time::SystemTime,
    traces: Option<Arc<crate::otel::TraceExporter>>,
    keys: keys::LiveKeys,
    auth_throttle: crate::auth_throttle::AuthThrottle,
    reloading: tokio::sync::Mutex<()>,
}

impl Host {
    /// Starts serving `app` with the given built components; `addr` is the
    /// address the listener is bound to. Trigger loops start too.
    pub async fn start(
        options: HostOptions,
        addr: SocketAddr,
        app: App,
        components: &BTreeMap<String, PathBuf>,
    ) -> Result<Arc<Self>> {
        let state = app.state_dir();
        // Clusters sharing engines keep apart by their name.
        let namespace = match &options.cluster {
            Some(cluster) => format!("{}_{}", cluster.cluster(), app.name),
            None => app.name.clone(),
        };
        let services = Services::open(&options.backends, &namespace, &state)
            .await
            .context("cannot open the app's backends")?;
        let host =
            tokio::task::block_in_place(|| Self::build(options, addr, app, components, services))?;
        // Other nodes' server-sent events reach this one from the start.
        host.sse.ready().await;
        Ok(host)
    }

    fn build(
        options: HostOptions,
        addr: SocketAddr,
        app: App,
        components: &BTreeMap<String, PathBuf>,
        services: Services,
    ) -> Result<Arc<Self>> {
        let state = app.state_dir();
        let runtime = Runtime::new(RuntimeOptions {
            pooling: options.pooling,
            ..RuntimeOptions::default()
        })?;
        let logs = Arc::new(LogHub::new(&state.join("logs"), options.echo_logs));
        let node = match &options.cluster {
            Some(cluster) => cluster.node().to_string(),
            None => node_name(),
        };
        let mut stats = HashMap::new();
        let metrics = crate::metrics::FunctionRegistry::default();
        let recent = crate::invocations::RecentInvocations::default();
        let inputs = Arc::new(crate::replay::EventInputs::new(options.replay));
        let traces = options
            .traces
            .as_ref()
            .map(|config| crate::otel::TraceExporter::start(config, &app.name, &node));
        let keys = keys::LiveKeys::new(keys::load_or_create(&app)?);
        let sse = Arc::new(crate::sse::SseHub::with_broadcast(
            services.broadcast.clone(),
        ));
        let loaded = LoadedApp::load(
            app,
            components,
            keys.clone(),
            LoadContext {
                runtime: &runtime,
                services: &services,
                logs: logs.clone(),
                stats: &mut stats,
                metrics: &metrics,
                recent: &recent,
                inputs: &inputs,
                traces: traces.as_ref(),
                reuse_instances: options.reuse_instances,
                sse: sse.clone(),
            },
        )?;
        logs.hide(&loaded.secrets);
        Ok(Arc::new(Self {
            options,
            addr,
            runtime,
            logs,
            services,
            node,
            mqtt: std::sync::Mutex::new(None),
            current: ArcSwap::from_pointee(loaded),
            sse,
            stats: Mutex::new(stats),
            metrics,
            recent,
            inputs,
            started: std::time::SystemTime::now(),
            traces,
            keys,
            auth_throttle: Default::default(),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The app as currently loaded. In-flight requests keep the version they
    /// started with, so a reload never drops them.
    pub fn current(&self) -> Arc<LoadedApp> {
        self.current.load_full()
    }

    /// `http://addr` (`https://addr` when the listener serves TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.options.serve.scheme(), self.addr)
    }

    /// `host:port`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The server-sent-event hub (`[[sse]]` streams), kept across reloads.
    pub fn sse(&self) -> &crate::sse::SseHub {
        &self.sse
    }

    /// What became of the spans exported so far; `None` without trace
    /// export.
    pub fn trace_stats(&self) -> Option<crate::otel::ExportStats> {
        self.traces.as_ref().map(|t| t.stats())
    }

    /// The log hub.
    pub fn logs(&self) -> &LogHub {
        &self.logs
    }

    /// The recent invocations of every function.
    pub fn recent_invocations(&self) -> &crate::invocations::RecentInvocations {
        &self.recent
    }

    /// The inputs of recent event invocations, kept for replay.
    pub fn event_inputs(&self) -> &crate::replay::EventInputs {
        &self.inputs
    }

    /// When this host started.
    pub fn started(&self) -> std::time::SystemTime {
        self.started
    }

    /// This node's name (in leases, and in the console).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Starts the triggers of the loaded app (after `start`).
    pub async fn start_triggers(&self) -> Result<()> {
        let app = self.current();
        let cx = self.trigger_context(&app)?;
        app.start_triggers(&cx).await
    }

    /// The embedded MQTT broker's address, if it runs.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        let broker = self.mqtt.lock().expect("mqtt lock");
        broker.as_ref().map(EmbeddedBroker::local_addr)
    }

    /// Starts the embedded MQTT broker if `app` needs it and it is not
    /// running; returns the URL Gust's own subscribers use.
    fn mqtt_broker(&self, app: &LoadedApp) -> Result<Option<gust_backends::mqtt::BrokerUrl>> {
        let mut broker = self.mqtt.lock().expect("mqtt lock");
        if broker.is_none() && app.needs_embedded_broker() {
            let started = EmbeddedBroker::start(EmbeddedBrokerConfig {
                listen: self.options.mqtt_listen,
                ..EmbeddedBrokerConfig::default()
            })
            .with_context(|| {
                format!(
                    "cannot start the embedded MQTT broker on {} (choose another address with --mqtt-listen)",
                    self.options.mqtt_listen
                )
            })?;
            *broker = Some(started);
        }
        Ok(broker.as_ref().map(EmbeddedBroker::client_url))
    }

    fn trigger_context(&self, app: &LoadedApp) -> Result<TriggerContext<'_>> {
        Ok(TriggerContext {
            services: &self.services,
            node: self.node.clone(),
            mqtt_broker: self.mqtt_broker(app)?,
            cluster: self.options.cluster.clone(),
        })
    }

    /// Stops the triggers, letting running invocations settle, then sends
    /// the spans still queued for export (waiting at most 5 s for the
    /// collector), so a stop loses none of them.
    pub async fn stop_triggers(&self) {
        self.current().stop_triggers().await;
        if let Some(traces) = &self.traces
            && !traces.flush(std::time::Duration::from_secs(5)).await
        {
            tracing::warn!(
                "trace export: the collector took over 5 s; spans still queued are lost"
            );
        }
    }

    /// The resources of this host's app, each on its engine.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The streams of this host's app.
    pub fn streams(&self) -> &dyn StreamProvider {
        self.services.streams.as_ref()
    }

    /// The queues of this host's app.
    pub fn queues(&self) -> &dyn QueueProvider {
        self.services.queues.as_ref()
    }

    /// Queue `name` of this host's app, where the name of a topic
    /// subscription of the current app (`<topic>--<function>`) opens that
    /// subscription (on engines where it is not a plain queue).
    pub async fn open_queue(&self, name: &str) -> gust_backends::Result<Arc<dyn Queue>> {
        let app = self.current();
        for f in &app.app.functions {
            if let Ok(t) = TopicSettings::of(f)
                && gust_backends::topic::subscription_queue(&t.topic, &f.name) == name
            {
                return self
                    .services
                    .topics
                    .topic(&t.topic)
                    .await?
                    .subscribe(&f.name)
                    .await;
            }
        }
        self.services.queues.queue(name).await
    }

    /// Replaces the keys `scope` names with new ones, saves them in the
    /// app's keys file and checks every request against them from now on;
    /// returns the new keys. A node of a cluster refuses: its keys are the
    /// cluster's.
    pub async fn rotate_keys(&self, scope: &keys::KeyScope) -> Result<keys::Keys> {
        if self.options.cluster.is_some() {
            anyhow::bail!(
                "this host is a node of a cluster, whose keys live in the cluster store; rotating them is not supported yet"
            );
        }
        let state = self.current().app.state_dir();
        // A reload reads the keys file: never between a save and the swap.
        let _one_at_a_time = self.reloading.lock().await;
        let next = keys::rotate(&state, &self.keys.current(), scope)?;
        self.keys.replace(next.clone());
        self.logs.log(
            "gust",
            LogLevel::Info,
            &format!("keys rotated ({})", scope.as_query()),
        );
        Ok(next)
    }

    /// Failed admin-key checks per client address.
    pub fn auth_throttle(&self) -> &crate::auth_throttle::AuthThrottle {
        &self.auth_throttle
    }

    /// The options the host runs with.
    pub fn options(&self) -> &HostOptions {
        &self.options
    }

    /// Re-reads the manifest, rebuilds changed functions and swaps the new
    /// app in. On any error the running app stays as it is.
    pub async fn reload(&self) -> Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let dir = self.options.app_dir.clone();
        let result = tokio::task::block_in_place(|| -> Result<LoadedApp> {
            let app = gust_triggers::load_app(&dir)?;
            let components = build_app(&app, &QuietProgress)?;
            self.keys.replace(keys::load_or_create(&app)?);
            let mut stats = self.stats.lock().expect("stats lock");
            LoadedApp::load(
                app,
                &components,
                self.keys.clone(),
                LoadContext {
                    runtime: &self.runtime,
                    services: &self.services,
                    logs: self.logs.clone(),
                    stats: &mut stats,
                    metrics: &self.metrics,
                    recent: &self.recent,
                    inputs: &self.inputs,
                    traces: self.traces.as_ref(),
                    reuse_instances: self.options.reuse_instances,
                    sse: self.sse.clone(),
                },
            )
        });
        if let Ok(loaded) = &result {
            self.logs.hide(&loaded.secrets);
        }
        let result = match result {
            Ok(loaded) => match self.trigger_context(&loaded) {
                Ok(cx) => {
                    self.sse.ready().await;
                    loaded.start_triggers(&cx).await.map(|()| loaded)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(loaded) => {
                let n = loaded.functions.len() + loaded.events.functions.len();
                let old = self.current.swap(Arc::new(loaded));
                old.stop_triggers().await;
                self.logs.log(
                    "gust",
                    LogLevel::Info,
                    &format!("reloaded: {n} functions active"),
                );
                Ok(())
            }
            Err(e) => {
                self.logs.log(
                    "gust",
                    LogLevel::Error,
                    &format!("reload failed, still serving the previous version: {e:#}"),
                );
                Err(e)
            }
        }
    }
}

/// This process's name in leases: `<hostname>-<pid>`.
pub fn node_name() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

/// This machine's name, for lease holders (`localhost` if unknown).
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
