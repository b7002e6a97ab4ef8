//! The validated app model that the rest of Gust works with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// An app: a folder with a `gust.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The app's folder (absolute).
    pub dir: PathBuf,
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// `[app] name`.
    pub name: String,
    /// `[variables]`, exposed to every function through `wasi:config/store`.
    pub variables: BTreeMap<String, Variable>,
    /// `[[function]]` entries in file order.
    pub functions: Vec<Function>,
    /// The `[gateway]` table as written, if any. Its shape and values are
    /// checked by the gateway (`gust_gateway::GatewayConfig`) when the host
    /// loads the app.
    pub gateway: Option<toml::Table>,
    /// `[[static]]` folders served as files, in file order.
    pub statics: Vec<StaticMount>,
    /// `[[sse]]` streams: topic events pushed to browsers.
    pub sse: Vec<crate::SseRoute>,
}

impl App {
    /// The function called `name`, if any.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The folder for the app's runtime state (`.gust/`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".gust")
    }
}

/// One `[[static]]` table: a folder of the app served as files under a URL
/// prefix (GET and HEAD); function routes win over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMount {
    /// URL prefix, e.g. `/` or `/assets` (no trailing `/` except for `/`).
    pub route: String,
    /// The folder served (absolute, inside the app folder).
    pub dir: PathBuf,
    /// File (relative to `dir`) answered for GET paths under `route` that
    /// name no file and have no extension: a single-page app's `index.html`.
    pub fallback: Option<String>,
}

/// A variable declared under `[variables]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Variable {
    /// Value used when no `GUST_VAR_<NAME>` environment variable overrides it.
    pub default: Option<String>,
    /// Startup fails when a required variable has no value.
    pub required: bool,
    /// Secret values are never printed.
    pub secret: bool,
}

/// One `[[function]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Unique name within the app (`[a-z0-9-]`).
    pub name: String,
    /// Where the component comes from.
    pub source: Source,
    /// What starts it.
    pub trigger: Trigger,
    /// Binding name -> resource it may touch.
    pub bindings: BTreeMap<String, Binding>,
    /// Retry policy for event triggers.
    pub retry: RetryPolicy,
    /// Resource limits.
    pub limits: Limits,
    /// `outbound_http`: destinations the function may call over HTTP
    /// (empty: none).
    pub outbound_http: Vec<crate::OutboundRule>,
}

impl Function {
    /// The HTTP trigger, when this is an HTTP function.
    pub fn http(&self) -> Option<&HttpTrigger> {
        match &self.trigger {
            Trigger::Http(http) => Some(http),
            _ => None,
        }
    }
}

/// Where a function's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Rust crate folder, built for `wasm32-wasip2` by `gust build`.
    Crate {
        /// Absolute path of the crate folder.
        dir: PathBuf,
        /// The crate's package name (from its `Cargo.toml`).
        package: String,
    },
    /// A JavaScript or TypeScript folder with a `package.json`, bundled and
    /// componentized by `gust build`.
    Js {
        /// Absolute path of the folder.
        dir: PathBuf,
    },
    /// A Python folder with a `pyproject.toml`, componentized by `gust build`.
    Python {
        /// Absolute path of the folder.
        dir: PathBuf,
    },
    /// A prebuilt component file.
    Wasm(PathBuf),
}

impl Source {
    /// The source folder `gust build` builds, unless this is a prebuilt file.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Source::Crate { dir, .. } | Source::Js { dir } | Source::Python { dir } => Some(dir),
            Source::Wasm(_) => None,
        }
    }
}

/// What starts a function.
///
/// The manifest checks the shape (exactly one kind, a table of settings);
/// each event trigger kind reads and validates its own settings (serde +
/// `validate`, in `gust-triggers`), and `gust_triggers::load_app` locates
/// what it refuses to the line of `gust.toml`.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// An HTTP request on a route.
    Http(HttpTrigger),
    /// One of the event triggers, with its settings as written.
    Event {
        /// `timer`, `queue`, `topic`, `blob`, `changefeed`, `stream`, `mqtt`,
        /// `workflow` or `activity`.
        kind: EventTriggerKind,
        /// The trigger's settings as written.
        settings: toml::Table,
    },
}

/// The event trigger kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTriggerKind {
    /// Cron schedule.
    Timer,
    /// Work queue.
    Queue,
    /// Publish/subscribe topic.
    Topic,
    /// Blob created or changed.
    Blob,
    /// Table change feed.
    Changefeed,
    /// Partitioned stream.
    Stream,
    /// MQTT topic filter.
    Mqtt,
    /// A durable workflow's orchestrator, started through
    /// `POST /_gust/workflows/{workflow}` and replayed from its journal.
    Workflow,
    /// An activity that workflows call (and nothing else starts).
    Activity,
}

impl EventTriggerKind {
    /// Every event trigger kind, in the order they are listed to people.
    pub const ALL: [Self; 9] = [
        Self::Timer,
        Self::Queue,
        Self::Topic,
        Self::Blob,
        Self::Changefeed,
        Self::Stream,
        Self::Mqtt,
        Self::Workflow,
        Self::Activity,
    ];

    /// The kind spelled `name` in the manifest.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timer => "timer",
            Self::Queue => "queue",
            Self::Topic => "topic",
            Self::Blob => "blob",
            Self::Changefeed => "changefeed",
            Self::Stream => "stream",
            Self::Mqtt => "mqtt",
            Self::Workflow => "workflow",
            Self::Activity => "activity",
        }
    }
}

/// `trigger = { http = { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// Route template, e.g. `/api/items/{id}`.
    pub route: String,
    /// Allowed methods; empty means any method.
    pub methods: Vec<http::Method>,
    /// Who may call it.
    pub auth: AuthLevel,
}

impl Trigger {
    /// The settings of an event trigger, as written.
    pub fn settings(&self) -> Option<&toml::Table> {
        match self {
            Self::Event { settings, .. } => Some(settings),
            Self::Http(_) => None,
        }
    }

    /// `http`, `queue`, `timer`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Event { kind, .. } => kind.as_str(),
        }
    }
}

/// HTTP authorisation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthLevel {
    /// No key needed.
    Anonymous,
    /// The function's key, the host key or the admin key.
    #[default]
    Function,
    /// Only the admin key.
    Admin,
}

impl AuthLevel {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Function => "function",
            Self::Admin => "admin",
        }
    }
}

/// A resource a function may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// What kind of resource.
    pub kind: BindingKind,
    /// The resource's name within the app.
    pub resource: String,
}

/// Resource kinds a binding can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// Key-value store (`wasi:keyvalue`).
    Kv,
    /// SQL database.
    Sql,
    /// Topic to publish to.
    Topic,
    /// Queue to send to.
    Queue,
    /// Stream to append to.
    Stream,
    /// Blob container.
    Blob,
    /// Document table (with a change feed).
    Table,
}

impl BindingKind {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kv => "kv",
            Self::Sql => "sql",
            Self::Topic => "topic",
            Self::Queue => "queue",
            Self::Stream => "stream",
            Self::Blob => "blob",
            Self::Table => "table",
        }
    }
}

/// How failed event deliveries are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Fixed or exponential backoff.
    pub strategy: RetryStrategy,
    /// Deliveries before dead-lettering (including the first).
    pub max_attempts: u32,
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// Most deliveries a policy may ask for.
    pub const MAX_ATTEMPTS: u32 = 100;
    /// Shortest delay between deliveries: a retry loop never spins.
    pub const MIN_DELAY: Duration = Duration::from_millis(10);
    /// Longest delay between deliveries.
    pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            strategy: RetryStrategy::Exponential,
            max_attempts: 5,
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Backoff shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// Always `min`.
    Fixed,
    /// `min * 2^(attempt-1)` capped at `max`, with jitter.
    Exponential,
}

/// Per-function resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, bytes.
    pub memory: u64,
    /// Wall-clock budget per invocation (enforced on guest execution).
    pub timeout: Duration,
    /// Invocations running at once; more get 429.
    pub concurrency: u32,
    /// Largest request body, bytes; larger gets 413.
    pub max_body: u64,
}

impl Limits {
    /// Largest `memory`.
    pub const MAX_MEMORY: u64 = 4 << 30;
    /// Smallest `memory`.
    pub const MIN_MEMORY: u64 = 1 << 20;
    /// Longest `timeout`.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
    /// Largest `concurrency`.
    pub const MAX_CONCURRENCY: u32 = 10_000;
    /// Largest `max_body`.
    pub const MAX_BODY: u64 = 1 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 128 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 64,
            max_body: 4 << 20,
        }
    }
}
