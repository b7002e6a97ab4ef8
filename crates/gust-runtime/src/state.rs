//! Per-function environment (shared) and per-instance state (one per store).

use std::collections::BTreeMap;
use std::sync::Arc;

use gust_backends::{BlobContainer, KeyValue, Queue, Sql, Stream, Table};
use gust_manifest::Limits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::MemoryLimiter;
use crate::log::{LogBudget, LogLevel, LogSink};
use crate::outbound::OutboundHooks;

/// Most bytes of stdout/stderr kept per invocation.
const CAPTURE_LIMIT: usize = 256 << 10;

/// What every instance of one function shares: its name, limits, variables
/// and the resources it declared (and nothing else).
pub struct FunctionEnv {
    /// The function's name (for logs).
    pub name: String,
    /// Limits from the manifest.
    pub limits: Limits,
    /// Values served through `wasi:config/store`.
    pub variables: WasiConfigVariables,
    /// Key-value stores by binding name.
    pub kv: BTreeMap<String, Arc<dyn KeyValue>>,
    /// Queues the function may send to, by binding name.
    pub queues: BTreeMap<String, Arc<dyn Queue>>,
    /// SQL databases by binding name.
    pub sql: BTreeMap<String, Arc<dyn Sql>>,
    /// Document tables by binding name.
    pub tables: BTreeMap<String, Arc<dyn Table>>,
    /// Blob containers by binding name.
    pub blobs: BTreeMap<String, Arc<dyn BlobContainer>>,
    /// Streams the function may append to, by binding name.
    pub streams: BTreeMap<String, Arc<dyn Stream>>,
    /// Topics the function may publish to: binding name -> topic name.
    pub topics: BTreeMap<String, String>,
    /// Delivers published events (set when the function has a topic binding).
    pub publisher: Option<Arc<dyn TopicPublisher>>,
    /// Destinations reachable through `wasi:http/outgoing-handler`
    /// (empty: every outbound request is denied).
    pub outbound_http: Vec<gust_manifest::OutboundRule>,
    /// Outbound requests of all the function's instances in flight at once
    /// (see [`crate::outbound::MAX_OUTBOUND_IN_FLIGHT`]); more wait.
    pub outbound_permits: Arc<tokio::sync::Semaphore>,
    /// Where log lines go.
    pub log: Arc<dyn LogSink>,
    /// Told about new instances and late failures (the host's metrics).
    pub observer: Option<Arc<dyn crate::InvocationObserver>>,
    /// Told about every finished invocation of a sampled trace (spans);
    /// `None` when traces are not exported.
    pub tracer: Option<Arc<dyn crate::InvocationTracer>>,
    /// Answers `gust:function/workflow` (orchestrators and activities).
    pub workflow: Option<Arc<dyn crate::WorkflowHost>>,
}

impl FunctionEnv {
    /// An environment with no bindings.
    pub fn new(name: impl Into<String>, limits: Limits, log: Arc<dyn LogSink>) -> Self {
        Self {
            name: name.into(),
            limits,
            variables: WasiConfigVariables::new(),
            kv: BTreeMap::new(),
            queues: BTreeMap::new(),
            sql: BTreeMap::new(),
            tables: BTreeMap::new(),
            blobs: BTreeMap::new(),
            streams: BTreeMap::new(),
            topics: BTreeMap::new(),
            publisher: None,
            outbound_http: Vec::new(),
            outbound_permits: Arc::new(tokio::sync::Semaphore::new(
                crate::outbound::MAX_OUTBOUND_IN_FLIGHT,
            )),
            log,
            observer: None,
            tracer: None,
            workflow: None,
        }
    }

    /// Answers `gust:function/workflow` through `host`.
    pub fn with_workflow(mut self, host: Arc<dyn crate::WorkflowHost>) -> Self {
        self.workflow = Some(host);
        self
    }

    /// Reports new instances and late failures to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn crate::InvocationObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Reports finished invocations of sampled traces to `tracer`.
    pub fn with_tracer(mut self, tracer: Arc<dyn crate::InvocationTracer>) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Allows outbound HTTP to the destinations `rules` allow.
    pub fn with_outbound_http(mut self, rules: Vec<gust_manifest::OutboundRule>) -> Self {
        self.outbound_http = rules;
        self
    }

    /// Sets the variables served through `wasi:config`.
    pub fn with_variables(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.variables = vars.into_iter().collect();
        self
    }

    /// Grants sending to `queue` under `binding`.
    pub fn with_queue(mut self, binding: impl Into<String>, queue: Arc<dyn Queue>) -> Self {
        self.queues.insert(binding.into(), queue);
        self
    }

    /// Grants a SQL database under `binding`.
    pub fn with_sql(mut self, binding: impl Into<String>, db: Arc<dyn Sql>) -> Self {
        self.sql.insert(binding.into(), db);
        self
    }

    /// Grants a blob container under `binding`.
    pub fn with_blob(
        mut self,
        binding: impl Into<String>,
        container: Arc<dyn BlobContainer>,
    ) -> Self {
        self.blobs.insert(binding.into(), container);
        self
    }

    /// Grants appending to `stream` under `binding`.
    pub fn with_stream(mut self, binding: impl Into<String>, stream: Arc<dyn Stream>) -> Self {
        self.streams.insert(binding.into(), stream);
        self
    }

    /// Grants a document table under `binding`.
    pub fn with_table(mut self, binding: impl Into<String>, table: Arc<dyn Table>) -> Self {
        self.tables.insert(binding.into(), table);
        self
    }

    /// Grants publishing to `topic` under `binding`, through `publisher`.
    pub fn with_topic(
        mut self,
        binding: impl Into<String>,
        topic: impl Into<String>,
        publisher: Arc<dyn TopicPublisher>,
    ) -> Self {
        self.topics.insert(binding.into(), topic.into());
        self.publisher = Some(publisher);
        self
    }

    /// Logs that `binding` was refused and returns the reason for the guest.
    pub(crate) fn refuse(&self, kind: &str, binding: &str) -> String {
        let why = format!("`{binding}` is not a {kind} binding of this function");
        self.log.log(
            &self.name,
            LogLevel::Warn,
            &format!("{kind} access refused: {why}"),
        );
        why
    }

    /// Grants a key-value store under `binding`.
    pub fn with_kv(mut self, binding: impl Into<String>, store: Arc<dyn KeyValue>) -> Self {
        self.kv.insert(binding.into(), store);
        self
    }
}

/// Publishes events to a topic's subscriptions (implemented by the host).
pub trait TopicPublisher: Send + Sync {
    /// Publishes `event` to `topic`; resolves to the event id once every
    /// subscription stored it.
    fn publish(
        &self,
        topic: &str,
        event: gust_events::Event,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>;
}

/// The data of one wasmtime `Store`: WASI contexts, the resource table, the
/// memory limiter and captured output.
pub struct HostState {
    pub(crate) env: Arc<FunctionEnv>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// Bytes of stdout/stderr already forwarded to the log sink.
    flushed: (usize, usize),
    /// When the current invocation started (its timeout counts from here).
    started: std::time::Instant,
    /// What the current invocation may still log.
    log_budget: LogBudget,
    /// The current invocation's ids.
    pub(crate) invocation: crate::InvocationIds,
    /// The workflow run or activity this invocation serves (the event's
    /// `gustrun` extension), if any.
    pub(crate) run: Option<String>,
}

impl HostState {
    pub(crate) fn new(env: Arc<FunctionEnv>) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURE_LIMIT);
        let stderr = MemoryOutputPipe::new(CAPTURE_LIMIT);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        Self {
            limiter: MemoryLimiter::new(env.limits.memory),
            outbound: OutboundHooks::new(env.clone()),
            env,
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            stdout,
            stderr,
            flushed: (0, 0),
            started: std::time::Instant::now(),
            log_budget: LogBudget::default(),
            invocation: crate::InvocationIds::default(),
            run: None,
        }
    }

    /// A store for `env` with its memory limiter and timeout.
    ///
    /// Every epoch tick (one engine-wide ticker) the guest yields to the
    /// async runtime, so a CPU-bound guest never holds a worker thread
    /// (other requests, admin calls and triggers keep running); once the
    /// invocation has run past its timeout the next tick interrupts it.
    pub(crate) fn store(engine: &wasmtime::Engine, env: Arc<FunctionEnv>) -> wasmtime::Store<Self> {
        let mut store = wasmtime::Store::new(engine, Self::new(env));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|cx| {
            let state = cx.data();
            if state.started.elapsed() >= state.env.limits.timeout {
                Ok(wasmtime::UpdateDeadline::Interrupt)
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Starts a new invocation with `ids` on `store`: its timeout clock,
    /// its log budget.
    pub(crate) fn start_invocation(store: &mut wasmtime::Store<Self>, ids: crate::InvocationIds) {
        store.data_mut().invocation = ids;
        let now = std::time::Instant::now();
        store.data_mut().started = now;
        store.data_mut().outbound.started = now;
        store.data_mut().outbound.trace = Some(store.data().invocation.trace.clone());
        store.data_mut().log_budget = LogBudget::default();
        store.set_epoch_deadline(1);
    }

    /// Logs a line of the guest's, within the invocation's budget.
    pub(crate) fn guest_log(&mut self, level: LogLevel, line: &str) {
        if let Some(line) = self.log_budget.admit(line) {
            self.env
                .log
                .log_invocation(&self.env.name, level, &line, &self.invocation);
        }
    }

    /// Sends whatever the guest printed since the last flush to the log sink,
    /// one line at a time (stdout as info, stderr as warn), and notes lines
    /// dropped over the invocation's log budget. Called once an invocation
    /// has returned.
    pub(crate) fn flush_output(&mut self) {
        let out = unread(&self.stdout, &mut self.flushed.0);
        let err = unread(&self.stderr, &mut self.flushed.1);
        for (text, level) in [(out, LogLevel::Info), (err, LogLevel::Warn)] {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                self.guest_log(level, line);
            }
        }
        if let Some(note) = self.log_budget.finish() {
            self.env
                .log
                .log_invocation(&self.env.name, LogLevel::Warn, &note, &self.invocation);
        }
    }
}

/// What the guest wrote to `pipe` after the first `done` bytes (then all
/// of it counts as done).
fn unread(pipe: &MemoryOutputPipe, done: &mut usize) -> String {
    let bytes = pipe.contents();
    let text = bytes
        .get(*done..)
        .map(|new| String::from_utf8_lossy(new).into_owned())
        .unwrap_or_default();
    *done = bytes.len();
    text
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl crate::event::generated::gust::function::types::Host for HostState {}
