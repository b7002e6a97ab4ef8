//! An app loaded and ready to serve: routes, keys, functions and their
//! concurrency permits. A reload builds a new one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use std::future::Future;
use std::pin::Pin;

use anyhow::{Context, Result, bail};
use gust_backends::{Services, TopicProvider};
use gust_events::{Event, Outcome};
use gust_manifest::{App, BindingKind, Function, Trigger};
use gust_runtime::{EventFunction, FunctionEnv, HttpFunction, LogLevel, LogSink, Runtime};
use gust_triggers::http::HttpRouter;
use gust_triggers::registry::{self, StartContext};
use gust_triggers::settings::Settings;
use gust_triggers::topic::{Publisher, TopicSettings};
use gust_triggers::{Dispatcher, Shutdown};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::invocations::{Invocation, RecentInvocations, Ring};
use crate::metrics::{FunctionMetrics, FunctionRegistry};
use crate::replay::{EventInputs, KeptInput};

/// Counters of one function, kept across reloads.
#[derive(Debug, Default, Serialize)]
pub struct FunctionStats {
    /// Invocations started.
    pub invocations: AtomicU64,
    /// Invocations that failed (trap, timeout, ...).
    pub failures: AtomicU64,
    /// Requests turned away by the concurrency limit.
    pub rejected: AtomicU64,
}

impl FunctionStats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A function ready to run (cheap to clone: clones share permits and stats).
#[derive(Clone)]
pub struct LoadedFunction {
    /// The pre-instantiated component.
    pub http: Arc<HttpFunction>,
    /// One permit per allowed concurrent invocation.
    pub permits: Arc<Semaphore>,
    /// Its counters.
    pub stats: Arc<FunctionStats>,
    /// Its metrics series.
    pub metrics: Arc<FunctionMetrics>,
    /// Its recent invocations.
    pub recent: Arc<Ring>,
    /// The component file it runs.
    pub component: PathBuf,
}

/// An event function ready to run, with its counters.
pub struct LoadedEventFunction {
    /// The pre-instantiated component.
    pub function: Arc<EventFunction>,
    /// Its counters.
    pub stats: Arc<FunctionStats>,
    /// Its metrics series.
    pub metrics: Arc<FunctionMetrics>,
    /// Its recent invocations.
    pub recent: Arc<Ring>,
    /// Its trigger kind.
    pub trigger: &'static str,
}

/// The app's event functions; triggers reach them through [`Dispatcher`].
pub struct EventFunctions {
    /// Event functions by name.
    pub functions: HashMap<String, LoadedEventFunction>,
    /// Where failures are reported.
    logs: Arc<dyn LogSink>,
    /// Inputs kept for replay (shared by every version of the app).
    inputs: Arc<EventInputs>,
}

impl Dispatcher for EventFunctions {
    fn dispatch(
        &self,
        function: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        let function = function.to_string();
        Box::pin(async move { self.run(&function, event, Run::Triggered).await.0 })
    }
}

/// Why an event function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// A trigger delivered the event: its input is kept for replay (when
    /// the store is on).
    Triggered,
    /// A replay: nothing is kept, and the caller gets the invocation's
    /// record.
    Replay,
}

impl EventFunctions {
    /// Runs `function` once on `event`: counts it, records the invocation
    /// and logs a failure. A [`Run::Triggered`] run keeps its input for
    /// replay; a [`Run::Replay`] answers its record too (`None` when the
    /// function is not loaded, or for a triggered run).
    pub async fn run(
        &self,
        function: &str,
        event: Event,
        why: Run,
    ) -> (Outcome, Option<Invocation>) {
        let Some(f) = self.functions.get(function) else {
            let why = format!("function `{function}` is not loaded");
            return (Outcome::Retry(why), None);
        };
        FunctionStats::bump(&f.stats.invocations);
        let _in_flight = f.metrics.start();
        let (id, attempt) = (event.id.clone(), event.attempt);
        let input = (why == Run::Triggered && self.inputs.enabled()).then(|| event.clone());
        let ids = gust_runtime::InvocationIds::new(event.extension("traceparent"));
        let (started, began) = (SystemTime::now(), Instant::now());
        let result = f.function.handle_as(event, ids.clone()).await;
        let mut record = Invocation::new(&ids, function, f.trigger, started, began.elapsed());
        record.event = Some(id.clone());
        record.attempt = Some(attempt);
        (record.outcome, record.error) = match &result {
            Ok(Outcome::Done) => ("ok", None),
            Ok(Outcome::Retry(m)) => ("retry", Some(m.clone())),
            Ok(Outcome::Fail(m)) => ("failed", Some(m.clone())),
            Err(e) => ("error", e.to_string().lines().next().map(str::to_string)),
        };
        let record = match (why, input) {
            (Run::Replay, _) => {
                f.recent.push(record.clone());
                Some(record)
            }
            (Run::Triggered, Some(event)) => {
                f.recent.push(record.clone());
                self.inputs.keep(KeptInput {
                    function: function.to_string(),
                    event,
                    invocation: record,
                });
                None
            }
            (Run::Triggered, None) => {
                f.recent.push(record);
                None
            }
        };
        let outcome = match result {
            Ok(Outcome::Done) => Outcome::Done,
            Ok(other) => {
                FunctionStats::bump(&f.stats.failures);
                f.metrics.failed(false);
                let (kind, message) = match &other {
                    Outcome::Fail(m) => ("failed (not retryable)", m),
                    Outcome::Retry(m) => ("failed (retryable)", m),
                    Outcome::Done => unreachable!("handled above"),
                };
                self.logs.log_invocation(
                    function,
                    LogLevel::Warn,
                    &format!("event {id} attempt {attempt} {kind}: {message}"),
                    &ids,
                );
                other
            }
            Err(e) => {
                FunctionStats::bump(&f.stats.failures);
                f.metrics
                    .failed(matches!(e, gust_runtime::InvokeError::Timeout(_)));
                // The first line names the cause; the backtrace is in the logs.
                let text = format!("function {e}");
                Outcome::Retry(text.lines().next().unwrap_or_default().to_string())
            }
        };
        (outcome, record)
    }
}

/// Running trigger loops of one app version.
#[derive(Default)]
struct RunningTriggers {
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

/// A validated, compiled app.
pub struct LoadedApp {
    /// The manifest.
    pub app: App,
    /// HTTP routes.
    pub router: HttpRouter,
    /// The app's keys (shared with the host, which rotates them).
    pub keys: crate::keys::LiveKeys,
    /// HTTP functions by name.
    pub functions: HashMap<String, LoadedFunction>,
    /// Event functions by name.
    pub events: Arc<EventFunctions>,
    /// Fans published events out to topic subscriptions (set by
    /// `start_triggers`; functions with topic bindings share it).
    pub publisher: Arc<std::sync::OnceLock<Publisher>>,
    /// The API gateway of `[gateway]`, if the manifest has one.
    pub gateway: Option<gust_gateway::Gateway>,
    /// Files of the `[[static]]` mounts.
    pub statics: crate::static_files::StaticFiles,
    /// Values of secret variables, hidden from logs and admin answers.
    pub secrets: crate::secrets::Secrets,
    triggers: std::sync::Mutex<RunningTriggers>,
}

/// What starting triggers needs from the host.
pub struct TriggerContext<'a> {
    /// The app's resources.
    pub services: &'a Services,
    /// This node's name in leases.
    pub node: String,
    /// The embedded MQTT broker's URL, for mqtt triggers that name no other
    /// broker.
    pub mqtt_broker: Option<gust_backends::mqtt::BrokerUrl>,
    /// The node's cluster, if it is in one.
    pub cluster: Option<Arc<gust_triggers::ownership::Membership>>,
}

/// What `load` needs from the host.
pub struct LoadContext<'a> {
    /// The engine and linker.
    pub runtime: &'a Runtime,
    /// The app's resources.
    pub services: &'a Services,
    /// Log destination.
    pub logs: Arc<dyn LogSink>,
    /// Counters by function name (kept across reloads).
    pub stats: &'a mut HashMap<String, Arc<FunctionStats>>,
    /// Metrics series by function (kept across reloads).
    pub metrics: &'a FunctionRegistry,
    /// Recent invocations by function (kept across reloads).
    pub recent: &'a RecentInvocations,
    /// Event invocations' inputs kept for replay (kept across reloads).
    pub inputs: &'a Arc<EventInputs>,
    /// Where each invocation's span goes, when traces are exported.
    pub traces: Option<&'a Arc<crate::otel::TraceExporter>>,
    /// Reuse instances between requests (opt-in).
    pub reuse_instances: bool,
    /// Where accepted topic events go for `[[sse]]` streams.
    pub sse: Arc<crate::sse::SseHub>,
}

impl LoadedApp {
    /// Compiles (through the cache) and pre-instantiates every function.
    pub fn load(
        app: App,
        components: &BTreeMap<String, PathBuf>,
        keys: crate::keys::LiveKeys,
        cx: LoadContext<'_>,
    ) -> Result<Self> {
        let router = HttpRouter::new(&app)?;
        let variables = resolve_variables(&app)?;
        let secrets = crate::secrets::Secrets::of(&app, &variables);
        let mut functions = HashMap::new();
        let mut events = EventFunctions {
            functions: HashMap::new(),
            logs: cx.logs.clone(),
            inputs: cx.inputs.clone(),
        };
        let publisher: Arc<std::sync::OnceLock<Publisher>> = Arc::default();
        cx.sse
            .watch_topics(app.sse.iter().map(|s| s.topic.as_str()));
        let topics: Arc<dyn gust_runtime::TopicPublisher> =
            Arc::new(AppTopics(publisher.clone(), cx.sse.clone()));
        for f in &app.functions {
            registry::validate(f)?;
            let path = components
                .get(&f.name)
                .with_context(|| format!("no component was built for function `{}`", f.name))?;
            let (component, _cached) = cx
                .runtime
                .load_component(path)
                .with_context(|| format!("function `{}`", f.name))?;
            let metrics = cx.metrics.series(&f.name, f.trigger.kind());
            let mut env =
                function_env(f, variables.clone(), &cx, &topics)?.with_observer(metrics.clone());
            if let Some(exporter) = cx.traces {
                env = env.with_tracer(Arc::new(crate::otel::FunctionTracer::new(
                    exporter.clone(),
                    f,
                )));
            }
            let stats = cx.stats.entry(f.name.clone()).or_default().clone();
            let recent = cx.recent.ring(&f.name);
            if !matches!(f.trigger, Trigger::Http(_)) {
                let function = EventFunction::new(cx.runtime, &component, env, cx.reuse_instances)
                    .with_context(|| format!("function `{}` ({})", f.name, path.display()))?;
                events.functions.insert(
                    f.name.clone(),
                    LoadedEventFunction {
                        function: Arc::new(function),
                        stats,
                        metrics,
                        recent,
                        trigger: f.trigger.kind(),
                    },
                );
                continue;
            }
            let http = HttpFunction::new(cx.runtime, &component, env, cx.reuse_instances)
                .with_context(|| format!("function `{}` ({})", f.name, path.display()))?;
            functions.insert(
                f.name.clone(),
                LoadedFunction {
                    http: Arc::new(http),
                    permits: Arc::new(Semaphore::new(f.limits.concurrency as usize)),
                    stats,
                    metrics,
                    recent,
                    component: path.clone(),
                },
            );
        }
        // A gateway string may hold a secret variable's value, and its
        // errors quote them.
        let gateway = crate::gateway::build(&app, &keys, &functions)
            .map_err(|e| anyhow::anyhow!("{}", secrets.redact(&format!("{e:#}"))))?;
        let statics = crate::static_files::StaticFiles::new(&app.statics);
        Ok(Self {
            statics,
            secrets,
            app,
            router,
            keys,
            functions,
            gateway,
            events: Arc::new(events),
            publisher,
            triggers: Default::default(),
        })
    }

    /// Starts every function's trigger through its kind in the trigger
    /// registry, then the topic publisher. Subscriptions that no function
    /// of this app version has any more are removed first.
    pub async fn start_triggers(&self, cx: &TriggerContext<'_>) -> Result<()> {
        let (stop, shutdown) = Shutdown::new();
        let mut tasks = Vec::new();
        let mut subscriptions = Vec::new();
        self.remove_stale_subscriptions(cx.services.topics.as_ref())
            .await?;
        let started = async {
            for f in &self.app.functions {
                let started = registry::kind_of(f)?
                    .start(StartContext {
                        app: &self.app.name,
                        function: f,
                        functions: &self.app.functions,
                        services: cx.services,
                        dispatcher: self.events.clone(),
                        shutdown: shutdown.clone(),
                        node: &cx.node,
                        mqtt_broker: cx.mqtt_broker.as_ref(),
                        cluster: cx.cluster.as_ref(),
                    })
                    .await?;
                tasks.extend(started.tasks);
                subscriptions.extend(started.subscription);
            }
            Ok::<_, registry::TriggerError>(())
        }
        .await;
        if let Err(e) = started {
            // Stop what did start before failing the load.
            let _ = stop.send(true);
            for task in tasks {
                let _ = task.await;
            }
            return Err(e.into());
        }
        let _ = self.publisher.set(Publisher::new(
            cx.services.topics.clone(),
            subscriptions,
            cx.services.dedupe.clone(),
        ));
        let mut running = self.triggers.lock().expect("triggers lock");
        running.stop = Some(stop);
        running.tasks = tasks;
        Ok(())
    }

    /// Unsubscribes every subscription of the backend's topics that no
    /// topic-triggered function of this app version owns (a function that
    /// was removed or renamed, or whose trigger changed topic).
    async fn remove_stale_subscriptions(&self, topics: &dyn TopicProvider) -> Result<()> {
        let wanted: std::collections::BTreeSet<(String, String)> = self
            .app
            .functions
            .iter()
            .filter_map(|f| Some((TopicSettings::of(f).ok()?.topic, f.name.clone())))
            .collect();
        for name in topics.topics().await.context("cannot list topics")? {
            let topic = topics.topic(&name).await?;
            for subscription in topic.subscriptions().await? {
                if !wanted.contains(&(name.clone(), subscription.clone())) {
                    tracing::info!(topic = %name, %subscription, "removing a subscription no function has any more");
                    topic.unsubscribe(&subscription).await.with_context(|| {
                        format!("cannot remove subscription `{subscription}` of topic `{name}`")
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Whether a function listens on the embedded MQTT broker.
    pub fn needs_embedded_broker(&self) -> bool {
        self.app
            .functions
            .iter()
            .any(gust_triggers::mqtt::MqttKind::uses_embedded_broker)
    }

    /// Stops taking new events and waits for running ones to settle.
    pub async fn stop_triggers(&self) {
        let tasks = {
            let mut running = self.triggers.lock().expect("triggers lock");
            if let Some(stop) = running.stop.take() {
                let _ = stop.send(true);
            }
            std::mem::take(&mut running.tasks)
        };
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The environment of `f`: limits, variables and the resources it declared.
fn function_env(
    f: &Function,
    variables: Vec<(String, String)>,
    cx: &LoadContext<'_>,
    topics: &Arc<dyn gust_runtime::TopicPublisher>,
) -> Result<FunctionEnv> {
    let mut env = FunctionEnv::new(f.name.clone(), f.limits, cx.logs.clone())
        .with_variables(variables)
        .with_outbound_http(f.outbound_http.clone())
        .with_workflow(gust_triggers::workflow::host());
    for (binding, b) in &f.bindings {
        match b.kind {
            BindingKind::Kv => {
                let store =
                    cx.services.kv.open(&b.resource).with_context(|| {
                        format!("function `{}`: kv store `{}`", f.name, b.resource)
                    })?;
                env = env.with_kv(binding.clone(), store);
            }
            BindingKind::Queue => {
                // Loading runs on a blocking thread (`block_in_place`), so
                // waiting for the queue to open here is fine.
                let queue = tokio::runtime::Handle::current()
                    .block_on(cx.services.queues.queue(&b.resource))
                    .with_context(|| format!("function `{}`: queue `{}`", f.name, b.resource))?;
                env = env.with_queue(binding.clone(), queue);
            }
            BindingKind::Sql => {
                let db = cx.services.sql.open(&b.resource).with_context(|| {
                    format!("function `{}`: sql database `{}`", f.name, b.resource)
                })?;
                env = env.with_sql(binding.clone(), db);
            }
            BindingKind::Table => {
                let table =
                    cx.services.tables.open(&b.resource).with_context(|| {
                        format!("function `{}`: table `{}`", f.name, b.resource)
                    })?;
                env = env.with_table(binding.clone(), table);
            }
            BindingKind::Stream => {
                // Loading runs on a blocking thread (`block_in_place`).
                let stream = tokio::runtime::Handle::current()
                    .block_on(cx.services.streams.stream(&b.resource))
                    .with_context(|| format!("function `{}`: stream `{}`", f.name, b.resource))?;
                env = env.with_stream(binding.clone(), stream);
            }
            BindingKind::Blob => {
                let container = cx.services.blobs.container(&b.resource).with_context(|| {
                    format!("function `{}`: blob container `{}`", f.name, b.resource)
                })?;
                env = env.with_blob(binding.clone(), container);
            }
            BindingKind::Topic => {
                env = env.with_topic(binding.clone(), b.resource.clone(), topics.clone());
            }
        }
    }
    Ok(env)
}

/// Lets functions publish to the app's topics, through the publisher the
/// triggers set up (events published before that are refused, not lost);
/// published events also reach the `[[sse]]` streams.
struct AppTopics(Arc<std::sync::OnceLock<Publisher>>, Arc<crate::sse::SseHub>);

impl gust_runtime::TopicPublisher for AppTopics {
    fn publish(
        &self,
        topic: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        let topic = topic.to_string();
        Box::pin(async move {
            let publisher = self
                .0
                .get()
                .ok_or_else(|| "the app's topics are not started yet; try again".to_string())?;
            let id = event.id.clone();
            let for_sse = self.1.watches(&topic).then(|| event.clone());
            publisher
                .publish(&topic, vec![event])
                .await
                .map_err(|e| format!("publishing to topic `{topic}` failed: {e}"))?;
            if let Some(event) = for_sse {
                self.1.publish(&topic, &[event]).await;
            }
            Ok(id)
        })
    }
}

/// Variable values: `GUST_VAR_<NAME>` from the environment, else the default.
pub fn resolve_variables(app: &App) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, var) in &app.variables {
        let env_name = format!("GUST_VAR_{}", name.to_ascii_uppercase());
        match std::env::var(&env_name)
            .ok()
            .or_else(|| var.default.clone())
        {
            Some(value) => out.push((name.clone(), value)),
            None if var.required => bail!(
                "variable `{name}` is required but has no value: set the environment variable {env_name} or give it a default in {}",
                app.manifest_path.display()
            ),
            None => {}
        }
    }
    Ok(out)
}
