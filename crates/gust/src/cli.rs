//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Gust runs WebAssembly component functions: HTTP now, every event
/// trigger soon, from a laptop to a cluster.
#[derive(Debug, Parser)]
#[command(name = "gust", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an app from a template (http-rust, event-rust, http-js, event-js, http-ts, http-py, event-py).
    New {
        /// Template name: `http-rust`, `event-rust`, `http-js`, `event-js`, `http-ts`, `http-py` or `event-py`.
        template: String,
        /// Folder to create (must not exist or be empty).
        dir: PathBuf,
    },
    /// Build the app's functions (Rust crates, JavaScript/TypeScript and Python folders) into components.
    Build {
        /// App folder (holding gust.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build and run the app with embedded backends; watch and hot-reload.
    Up(UpArgs),
    /// Run a long-lived node from a runtime config file: one app, or (with
    /// `[cluster]`) every app deployed to the cluster.
    Serve {
        /// The node config (listen address, app or [cluster], runtime options).
        #[arg(long, short)]
        config: PathBuf,
        /// Trace export (wins over `otlp_endpoint` and `trace_sample` in
        /// the node config).
        #[command(flatten)]
        traces: TraceArgs,
    },
    /// Build the app and deploy it to a cluster as its next version (or
    /// roll an app back to its previous version with --rollback).
    Deploy {
        /// App folder (holding gust.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Instead of deploying, return this app to its previous version.
        #[arg(long, value_name = "APP")]
        rollback: Option<String>,
        #[command(flatten)]
        target: ClusterTarget,
    },
    /// The apps deployed to a cluster.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// The nodes of a cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Invoke a function on the running host and print its response body.
    Invoke {
        /// Function name.
        function: String,
        /// Request body (use @file to send a file's contents).
        #[arg(long, short)]
        data: Option<String>,
        /// HTTP method (default: the route's first method).
        #[arg(long, short = 'X')]
        method: Option<String>,
        /// Path and query to send (default: the function's route).
        #[arg(long)]
        path: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Show function logs from the running host.
    Logs {
        /// Only this function's lines.
        function: Option<String>,
        /// Keep streaming new lines.
        #[arg(long, short)]
        follow: bool,
        /// Lines of history to show first.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        /// Only lines at this level or above (trace, debug, info, warn, error).
        #[arg(long)]
        level: Option<String>,
        /// Only the lines of this invocation (its id from the
        /// `x-gust-invocation-id` response header or a JSON line; 8 digits
        /// or more).
        #[arg(long)]
        invocation: Option<String>,
        /// One JSON object per line: time, level, function, message,
        /// invocation, trace_id.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Run an event function again, against its current version, on input
    /// it already had: one recorded invocation (shown beside the recorded
    /// outcome and logs), or a range of a stream (no consumer's checkpoint
    /// moves). Replayed events carry the `gust-replay` extension.
    Replay {
        /// The event function.
        function: String,
        /// The invocation to replay: its id from `gust logs --json`, the
        /// console or GET /_gust/invocations (8 digits or more). Its input
        /// is kept for --replay-max-age / --replay-max-bytes of `gust up`.
        #[arg(long, required_unless_present = "stream", conflicts_with = "stream")]
        invocation: Option<String>,
        /// Re-feed records of this stream to the function.
        #[arg(long, requires = "from")]
        stream: Option<String>,
        /// The first offset to replay (in each partition).
        #[arg(long, requires = "stream")]
        from: Option<u64>,
        /// The last offset to replay (default: the newest record).
        #[arg(long, requires = "stream")]
        to: Option<u64>,
        /// Only this partition (default: every partition of the stream).
        #[arg(long, requires = "stream")]
        partition: Option<u32>,
        /// Print the host's answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send to, peek at and manage queues of the running host.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Start, inspect, signal and stop durable workflows of the running host.
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Append to and read streams of the running host.
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
        #[command(flatten)]
        target: StreamTarget,
    },
    /// Publish events to topics of the running host.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Inspect the API gateway (`[gateway]` in gust.toml) of the running host.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
        #[command(flatten)]
        target: Target,
    },
    /// List the app's functions, their routes and counters.
    Ls {
        #[command(flatten)]
        target: Target,
    },
    /// Print the app's keys, one per line: `host <key>`, then
    /// `function <name> <key>` for each function, then `admin <key>`;
    /// `gust keys rotate` replaces them.
    #[command(args_conflicts_with_subcommands = true)]
    Keys {
        /// Replace keys with new ones.
        #[command(subcommand)]
        command: Option<KeysCommand>,
        /// App folder (holding gust.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print only the host key, bare.
        #[arg(long, conflicts_with_all = ["admin", "function", "json"])]
        host: bool,
        /// Print only the admin key, bare.
        #[arg(long, conflicts_with_all = ["function", "json"])]
        admin: bool,
        /// Print only this function's key, bare.
        #[arg(long, conflicts_with = "json")]
        function: Option<String>,
        /// Print all keys as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `gust up` options.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// App folder (holding gust.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070", env = "GUST_LISTEN")]
    pub listen: SocketAddr,
    /// Do not watch sources for changes.
    #[arg(long)]
    pub no_watch: bool,
    /// Reuse instances between requests: much faster, but state a function
    /// keeps in memory can be seen by later requests to the same function.
    #[arg(long)]
    pub reuse_instances: bool,
    /// Allocate instances on demand instead of from a pre-reserved pool.
    #[arg(long)]
    pub no_pooling: bool,
    /// Do not print function log lines to the terminal.
    #[arg(long, short)]
    pub quiet: bool,
    /// Put every resource NATS serves (queues, topics, broadcast) on NATS
    /// JetStream at this URL (e.g. nats://127.0.0.1:4222) instead of the
    /// embedded store.
    #[arg(long, env = "GUST_NATS_URL")]
    pub nats: Option<String>,
    /// Put every resource PostgreSQL serves on this database
    /// (e.g. postgres://postgres@127.0.0.1:5432/test).
    #[arg(long, env = "GUST_POSTGRES_URL")]
    pub postgres: Option<String>,
    /// Serve one resource from an engine, winning over --nats and
    /// --postgres: RESOURCE=URL, repeatable (resources: queue, topic,
    /// stream, kv, table, sql, blob, lease, broadcast), e.g.
    /// --backend sql=mysql://root@127.0.0.1:3306/legacy
    #[arg(long = "backend", value_name = "RESOURCE=URL")]
    pub backends: Vec<String>,
    /// Where the embedded MQTT broker listens (MQTT 3.1.1 and 5; started
    /// only when a function has an mqtt trigger; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:1884", env = "GUST_MQTT_LISTEN")]
    pub mqtt_listen: SocketAddr,
    /// Close a connection whose client has not sent a request head (or
    /// finished the TLS handshake) within this time, e.g. 10s or 500ms;
    /// also bounds the wait between requests on an HTTP/1 connection.
    #[arg(long, default_value = "10s", value_parser = gust_manifest::parse_duration, value_name = "DURATION")]
    pub header_timeout: Duration,
    /// Close a connection that had no open request for this long.
    #[arg(long, default_value = "60s", value_parser = gust_manifest::parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Serve HTTPS (and HTTP/2 by ALPN) with this PEM certificate chain
    /// (leaf first); it is read again when the file changes. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve Prometheus metrics without a key on this address, as
    /// GET /metrics (the same text as GET /_gust/metrics with the admin
    /// key; with a folder of apps, one listener for all of them). Keep it
    /// on a private address. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", env = "GUST_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Trace export.
    #[command(flatten)]
    pub traces: TraceArgs,
    /// Keep the inputs (CloudEvents) of event invocations for `gust replay`
    /// in at most this much memory (events and bookkeeping), e.g. 32MiB;
    /// the apps of a folder share it evenly. The oldest are forgotten
    /// first, and 0 keeps none.
    #[arg(long, default_value = "32MiB", value_parser = gust_manifest::parse_size, value_name = "SIZE")]
    pub replay_max_bytes: u64,
    /// Forget kept event inputs after this long, e.g. 1h or 30m.
    #[arg(long, default_value = "1h", value_parser = gust_manifest::parse_duration, value_name = "DURATION")]
    pub replay_max_age: Duration,
}

/// Where spans go: one per invocation, exported with OTLP over
/// HTTP/protobuf.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Export a span per invocation to this OpenTelemetry collector
    /// (OTLP/HTTP, protobuf; spans are POSTed to URL/v1/traces), e.g.
    /// http://127.0.0.1:4318. Without it, OTEL_EXPORTER_OTLP_ENDPOINT is
    /// read; without either, nothing is exported.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces to sample, from 0 to 1 (default 1, or
    /// OTEL_TRACES_SAMPLER_ARG). A request or event that carries a
    /// `traceparent` keeps its caller's decision.
    #[arg(long, value_name = "RATIO")]
    pub trace_sample: Option<f64>,
}

impl TraceArgs {
    /// The trace export settings from these flags, then `node`'s
    /// (node.toml) endpoint and ratio, then the environment.
    pub fn config(
        &self,
        node: Option<(&Option<String>, Option<f64>)>,
    ) -> anyhow::Result<Option<gust_host::otel::TraceConfig>> {
        let (node_endpoint, node_sample) = node.unwrap_or((&None, None));
        let endpoint = self.otlp_endpoint.as_deref().or(node_endpoint.as_deref());
        let sample = self.trace_sample.or(node_sample);
        Ok(gust_host::otel::TraceConfig::resolve(endpoint, sample)?)
    }
}

impl UpArgs {
    /// The listener's timeouts and TLS from `--header-timeout`,
    /// `--idle-timeout`, `--tls-cert` and `--tls-key`.
    pub fn serve_options(&self) -> anyhow::Result<gust_host::ServeOptions> {
        let tls = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
        crate::commands::serve_options(self.header_timeout, self.idle_timeout, tls)
    }

    /// What the hosts of `gust up` run with: the flags, plus `app_dir`,
    /// `listen` and listener options `serve` (which differ between one app
    /// and the apps of a folder).
    pub fn host_options(
        &self,
        app_dir: PathBuf,
        listen: SocketAddr,
        serve: gust_host::ServeOptions,
    ) -> anyhow::Result<gust_host::HostOptions> {
        Ok(gust_host::HostOptions {
            app_dir,
            listen,
            watch: !self.no_watch,
            reuse_instances: self.reuse_instances,
            pooling: !self.no_pooling,
            echo_logs: !self.quiet,
            backends: self.backend_config()?,
            mqtt_listen: self.mqtt_listen,
            cluster: None,
            serve,
            traces: self.traces.config(None)?,
            replay: gust_host::replay::ReplayLimits {
                max_bytes: self.replay_max_bytes,
                max_age: self.replay_max_age,
            },
        })
    }

    /// The engines chosen by `--nats`, `--postgres` and `--backend`.
    pub fn backend_config(&self) -> anyhow::Result<gust_host::BackendConfig> {
        let mut config = gust_host::BackendConfig {
            nats: self.nats.clone(),
            postgres: self.postgres.clone(),
            ..Default::default()
        };
        for spec in &self.backends {
            config
                .add_override(spec)
                .map_err(|e| anyhow::anyhow!("--backend {spec}: {e}"))?;
        }
        Ok(config)
    }
}

/// `gust keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Replace the app's keys with new random ones (all of them unless told
    /// which), save them in `.gust/keys.json` and, when the app's host is
    /// running, make it use them at once: the old keys stop working
    /// without a restart. Prints the new keys as `gust keys` does.
    Rotate {
        /// App folder (holding gust.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Rotate only the admin key.
        #[arg(long, conflicts_with_all = ["host", "function"])]
        admin: bool,
        /// Rotate only the host key.
        #[arg(long, conflicts_with = "function")]
        host: bool,
        /// Rotate only this function's key.
        #[arg(long)]
        function: Option<String>,
        /// PEM file of CA certificates to trust, next to the system's, when
        /// the host's URL is `https://` (e.g. the CA that signed the
        /// certificate of `gust up --tls-cert`).
        #[arg(long, value_name = "FILE", env = "GUST_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
}

/// Which running host a command talks to.
#[derive(Debug, Args)]
pub struct Target {
    /// App folder whose running host to use (reads .gust/host.json and .gust/keys.json).
    #[arg(long, default_value = ".", global = true)]
    pub app: PathBuf,
    /// Host URL (overrides the app folder's record).
    #[arg(long, env = "GUST_URL", global = true)]
    pub url: Option<String>,
    /// Admin key (overrides the app folder's keys).
    #[arg(long, env = "GUST_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// PEM file of CA certificates to trust, next to the system's, when
    /// the host's URL is `https://` (e.g. the CA that signed the
    /// certificate of `gust up --tls-cert`).
    #[arg(long, value_name = "FILE", env = "GUST_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// Which cluster a command talks to: any node's URL and the cluster's
/// admin key.
#[derive(Debug, Clone, Args)]
pub struct ClusterTarget {
    /// URL of any node of the cluster.
    #[arg(long, env = "GUST_URL")]
    pub url: String,
    /// The cluster's admin key (the content of `admin_key_file`).
    #[arg(long, env = "GUST_KEY", hide_env_values = true)]
    pub key: String,
    /// PEM file of CA certificates to trust, next to the system's, when
    /// the host's URL is `https://` (e.g. the CA that signed the
    /// certificate of `gust up --tls-cert`).
    #[arg(long, value_name = "FILE", env = "GUST_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// `gust apps ...`.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// List the apps with their current version and the version each node serves.
    Ls {
        #[command(flatten)]
        target: ClusterTarget,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `gust cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the live nodes: id, address, last heartbeat, apps, and what each
    /// owns (stream partitions, change feeds, blob watchers).
    Status {
        #[command(flatten)]
        target: ClusterTarget,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// [`Target`] for `gust stream`, where `--key` is a record's partition key:
/// the admin key is `--admin-key` (or `GUST_KEY`).
#[derive(Debug, Args)]
pub struct StreamTarget {
    /// App folder whose running host to use (reads .gust/host.json and .gust/keys.json).
    #[arg(long, default_value = ".", global = true)]
    pub app: PathBuf,
    /// Host URL (overrides the app folder's record).
    #[arg(long, env = "GUST_URL", global = true)]
    pub url: Option<String>,
    /// Admin key (overrides the app folder's keys).
    #[arg(long, env = "GUST_KEY", hide_env_values = true, global = true)]
    pub admin_key: Option<String>,
    /// PEM file of CA certificates to trust, next to the system's, when
    /// the host's URL is `https://` (e.g. the CA that signed the
    /// certificate of `gust up --tls-cert`).
    #[arg(long, value_name = "FILE", env = "GUST_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

impl From<StreamTarget> for Target {
    fn from(t: StreamTarget) -> Self {
        Self {
            app: t.app,
            url: t.url,
            key: t.admin_key,
            ca_cert: t.ca_cert,
        }
    }
}

/// `gust queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Send one message (prints its id).
    Send {
        /// Queue name.
        queue: String,
        /// The message (use @file to send a file's contents).
        #[arg(long, short)]
        data: String,
        /// Its media type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
    },
    /// Show waiting messages without taking them.
    Peek {
        /// Queue name.
        queue: String,
        /// How many at most.
        #[arg(long, default_value_t = 20)]
        max: usize,
    },
    /// The dead-letter queue (`<queue>-deadletter`).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

/// `gust workflows ...`.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// List instances (of one workflow, or all) with their status.
    Ls {
        /// Only this workflow's instances.
        workflow: Option<String>,
    },
    /// Show one instance: status, input, output, error (and its steps with --history).
    Show {
        /// The workflow (orchestrator function).
        workflow: String,
        /// The instance id.
        id: String,
        /// Also print every recorded step.
        #[arg(long)]
        history: bool,
    },
    /// Start an instance (prints its id and status URL).
    Start {
        /// The workflow (orchestrator function).
        workflow: String,
        /// The input, JSON (use @file to read a file).
        #[arg(long, short, default_value = "null")]
        data: String,
        /// The instance id (starting an existing id changes nothing).
        #[arg(long)]
        id: Option<String>,
    },
    /// Raise an event that an instance waits for (or will).
    Raise {
        /// The workflow.
        workflow: String,
        /// The instance id.
        id: String,
        /// The event's name.
        event: String,
        /// Its payload, JSON (use @file to read a file).
        #[arg(long, short, default_value = "null")]
        data: String,
    },
    /// Stop a running instance.
    Terminate {
        /// The workflow.
        workflow: String,
        /// The instance id.
        id: String,
        /// Why (kept as its error).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `gust queue dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters with their failure reason and attempt count.
    List {
        /// Queue name (not the -deadletter name).
        queue: String,
        /// How many at most.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Move every dead letter back onto its queue.
    Redrive {
        /// Queue name.
        queue: String,
    },
}

/// `gust stream ...`.
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Append one record (prints its partition and offset).
    Append {
        /// Stream name.
        stream: String,
        /// Partition key: records with one key keep their order.
        #[arg(long = "key", short)]
        key: String,
        /// The record (use @file to send a file's contents).
        #[arg(long, short)]
        data: String,
        /// Its media type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
    },
    /// Show the partitions and their offsets, or read records of one partition.
    Show {
        /// Stream name.
        stream: String,
        /// Read records of this partition.
        #[arg(long)]
        partition: Option<u32>,
        /// From this offset.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many at most.
        #[arg(long, default_value_t = 20)]
        max: usize,
    },
}

/// `gust events ...`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish one CloudEvent (structured mode) to a topic.
    Publish {
        /// Topic name.
        topic: String,
        /// CloudEvents `type`, e.g. `order.created`.
        #[arg(long = "type", short = 't')]
        event_type: String,
        /// Data: JSON (sent as JSON) or any text (sent as text/plain).
        #[arg(long, short, default_value = "null")]
        data: String,
        /// CloudEvents `source`.
        #[arg(long, default_value = "/gust/cli")]
        source: String,
        /// CloudEvents `subject`.
        #[arg(long)]
        subject: Option<String>,
        /// CloudEvents `id` (default: random); reusing one is dropped as a duplicate.
        #[arg(long)]
        id: Option<String>,
    },
}

/// `gust gateway ...`.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Show each upstream's circuit breaker, calls and failures, and each
    /// route's counters.
    Status {
        /// Print the raw JSON of `GET /_gust/gateway`.
        #[arg(long)]
        json: bool,
    },
}
