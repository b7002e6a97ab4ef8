//! An app loaded and ready to serve: routes, keys, functions and their
//! concurrency permits. A reload builds a new one and swaps it in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::future::Future;
use std::pin::Pin;

use anyhow::{Context, Result, bail};
use gust_backends::{Services, TopicProvider};
use gust_events::{Event, Outcome};
use gust_manifest::EventTriggerKind;
use gust_manifest::QueueTrigger;
use gust_manifest::{App, BindingKind, Function, Trigger};
use gust_runtime::{EventFunction, FunctionEnv, HttpFunction, LogLevel, LogSink, Runtime};
use gust_triggers::blob::BlobWatcher;
use gust_triggers::changefeed::{ChangeFeedConsumer, dead_letter_queue};
use gust_triggers::http::{HttpRouter, Keys};
use gust_triggers::mqtt::{BrokerUrl, MqttTrigger, MqttTriggerSettings};
use gust_triggers::queue::{EventFilter, QueueConsumer};
use gust_triggers::settle::retry_queue;
use gust_triggers::stream::{StreamConsumer, StreamTriggerSettings};
use gust_triggers::timer::TimerRunner;
use gust_triggers::topic::{Publisher, subscription_queue};
use gust_triggers::{Dispatcher, Shutdown};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

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
    /// The component file it runs.
    pub component: PathBuf,
}

/// An event function ready to run, with its counters.
pub struct LoadedEventFunction {
    /// The pre-instantiated component.
    pub function: Arc<EventFunction>,
    /// Its counters.
    pub stats: Arc<FunctionStats>,
}

/// The app's event functions; triggers reach them through [`Dispatcher`].
pub struct EventFunctions {
    /// Event functions by name.
    pub functions: HashMap<String, LoadedEventFunction>,
    /// Where failures are reported.
    logs: Arc<dyn LogSink>,
}

impl Dispatcher for EventFunctions {
    fn dispatch(
        &self,
        function: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        let function = function.to_string();
        Box::pin(async move {
            let Some(f) = self.functions.get(&function) else {
                return Outcome::Retry(format!("function `{function}` is not loaded"));
            };
            FunctionStats::bump(&f.stats.invocations);
            let (id, attempt) = (event.id.clone(), event.attempt);
            match f.function.handle(event).await {
                Ok(Outcome::Done) => Outcome::Done,
                Ok(other) => {
                    FunctionStats::bump(&f.stats.failures);
                    let (kind, message) = match &other {
                        Outcome::Fail(m) => ("failed (not retryable)", m),
                        Outcome::Retry(m) => ("failed (retryable)", m),
                        Outcome::Done => unreachable!("handled above"),
                    };
                    self.logs.log(
                        &function,
                        LogLevel::Warn,
                        &format!("event {id} attempt {attempt} {kind}: {message}"),
                    );
                    other
                }
                Err(e) => {
                    FunctionStats::bump(&f.stats.failures);
                    // The first line names the cause; the backtrace is in the logs.
                    let text = format!("function {e}");
                    Outcome::Retry(text.lines().next().unwrap_or_default().to_string())
                }
            }
        })
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
    /// The app's keys.
    pub keys: Keys,
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
    triggers: std::sync::Mutex<RunningTriggers>,
}

/// What starting triggers needs from the host.
pub struct TriggerContext<'a> {
    /// The app's resources.
    pub services: &'a Services,
    /// Where timer schedules keep their status.
    pub timer_status: Arc<dyn gust_backends::KeyValue>,
    /// Where blob triggers keep their receipts.
    pub blob_receipts: Arc<dyn gust_backends::KeyValue>,
    /// Where change-feed consumers keep their checkpoints.
    pub changefeed_checkpoints: Arc<dyn gust_backends::KeyValue>,
    /// This node's name in leases.
    pub node: String,
    /// The embedded MQTT broker, for mqtt triggers that name no other broker.
    pub mqtt_broker: Option<BrokerUrl>,
}

/// How long starting an mqtt trigger waits for its subscription to be
/// granted before the app is reported ready anyway.
const MQTT_SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
        keys: Keys,
        cx: LoadContext<'_>,
    ) -> Result<Self> {
        let router = HttpRouter::new(&app)?;
        let variables = resolve_variables(&app)?;
        let mut functions = HashMap::new();
        let mut events = EventFunctions {
            functions: HashMap::new(),
            logs: cx.logs.clone(),
        };
        let publisher: Arc<std::sync::OnceLock<Publisher>> = Arc::default();
        cx.sse
            .watch_topics(app.sse.iter().map(|s| s.topic.as_str()));
        let topics: Arc<dyn gust_runtime::TopicPublisher> =
            Arc::new(AppTopics(publisher.clone(), cx.sse.clone()));
        for f in &app.functions {
            if let Trigger::Event { kind, settings } = &f.trigger {
                check_event_trigger(&f.name, *kind, settings)?;
            }
            let path = components
                .get(&f.name)
                .with_context(|| format!("no component was built for function `{}`", f.name))?;
            let (component, _cached) = cx
                .runtime
                .load_component(path)
                .with_context(|| format!("function `{}`", f.name))?;
            let env = function_env(f, variables.clone(), &cx, &topics)?;
            let stats = cx.stats.entry(f.name.clone()).or_default().clone();
            if !matches!(f.trigger, Trigger::Http(_)) {
                let function = EventFunction::new(cx.runtime, &component, env, cx.reuse_instances)
                    .with_context(|| format!("function `{}` ({})", f.name, path.display()))?;
                events.functions.insert(
                    f.name.clone(),
                    LoadedEventFunction {
                        function: Arc::new(function),
                        stats,
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
                    component: path.clone(),
                },
            );
        }
        let gateway = crate::gateway::build(&app, &keys, &functions)?;
        let statics = crate::static_files::StaticFiles::new(&app.statics);
        Ok(Self {
            statics,
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

    /// Starts a consumer for every queue-triggered function and every topic
    /// subscription, and the topic publisher. Subscriptions that no function
    /// of this app version has any more are removed.
    pub async fn start_triggers(&self, cx: &TriggerContext<'_>) -> Result<()> {
        let (stop, shutdown) = Shutdown::new();
        let mut tasks = Vec::new();
        let mut subscriptions = Vec::new();
        self.remove_stale_subscriptions(cx.services.topics.as_ref())
            .await?;
        let queues = cx.services.queues.as_ref();
        for f in &self.app.functions {
            if let Trigger::Timer(timer) = &f.trigger {
                let runner = TimerRunner {
                    function: f.name.clone(),
                    trigger: timer.clone(),
                    status: cx.timer_status.clone(),
                    dispatcher: self.events.clone(),
                    lease: Some((cx.services.leases.clone(), cx.node.clone())),
                };
                tasks.push(tokio::spawn(runner.run(shutdown.clone())));
                continue;
            }
            if let Trigger::Blob(blob) = &f.trigger {
                let container =
                    cx.services
                        .blobs
                        .container(&blob.container)
                        .with_context(|| {
                            format!("function `{}`: blob container `{}`", f.name, blob.container)
                        })?;
                let name = retry_queue(&blob.container, &f.name);
                let dead_letters = cx.services.queues.queue(&name).await.with_context(|| {
                    format!("function `{}`: cannot open queue `{name}`", f.name)
                })?;
                tasks.push(tokio::spawn(
                    self.redrive_consumer(f, dead_letters.clone())
                        .run(shutdown.clone()),
                ));
                let watcher = BlobWatcher {
                    function: f.name.clone(),
                    trigger: blob.clone(),
                    container,
                    retry: f.retry.clone(),
                    receipts: cx.blob_receipts.clone(),
                    dispatcher: self.events.clone(),
                    max_size: f.limits.max_body,
                    dead_letters,
                };
                tasks.push(tokio::spawn(watcher.run(shutdown.clone())));
                continue;
            }
            if let Trigger::Changefeed(feed) = &f.trigger {
                let table = cx.services.tables.open(&feed.table).with_context(|| {
                    format!("function `{}`: cannot open table `{}`", f.name, feed.table)
                })?;
                let dead = dead_letter_queue(&feed.table, &f.name);
                let dead_letters = queues.queue(&dead).await.with_context(|| {
                    format!("function `{}`: cannot open queue `{dead}`", f.name)
                })?;
                tasks.push(tokio::spawn(
                    self.redrive_consumer(f, dead_letters.clone())
                        .run(shutdown.clone()),
                ));
                let consumer = ChangeFeedConsumer {
                    function: f.name.clone(),
                    trigger: feed.clone(),
                    retry: f.retry.clone(),
                    table,
                    checkpoints: cx.changefeed_checkpoints.clone(),
                    dead_letters,
                    dispatcher: self.events.clone(),
                };
                tasks.push(tokio::spawn(consumer.run(shutdown.clone())));
                continue;
            }
            if let Trigger::Event { kind, settings } = &f.trigger {
                match kind {
                    EventTriggerKind::Stream => {
                        let consumer = self.stream_consumer(f, settings, cx).await?;
                        tasks.push(tokio::spawn(
                            self.redrive_consumer(f, consumer.dead_letters.clone())
                                .run(shutdown.clone()),
                        ));
                        tasks.push(tokio::spawn(consumer.run(shutdown.clone())));
                    }
                    EventTriggerKind::Mqtt => {
                        let trigger = self.mqtt_trigger(f, settings, cx).await?;
                        let function = f.name.clone();
                        let stop = shutdown.clone();
                        let (subscribed, granted) = tokio::sync::oneshot::channel();
                        tasks.push(tokio::spawn(async move {
                            if let Err(e) = trigger.run_notifying(stop, Some(subscribed)).await {
                                tracing::error!(function = %function, "mqtt trigger stopped: {e}");
                            }
                        }));
                        // Ready only once messages published from now on reach
                        // the function; a broker that is down is retried in
                        // the background.
                        if !matches!(
                            tokio::time::timeout(MQTT_SUBSCRIBE_WAIT, granted).await,
                            Ok(Ok(()))
                        ) {
                            tracing::warn!(function = %f.name, "MQTT subscription not granted within {MQTT_SUBSCRIBE_WAIT:?}; still trying in the background");
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let trigger = match &f.trigger {
                Trigger::Queue(trigger) => trigger.clone(),
                Trigger::Topic(topic) => QueueTrigger {
                    queue: subscription_queue(&topic.topic, &f.name),
                    batch_size: 16,
                    concurrency: topic.concurrency,
                    visibility: std::time::Duration::from_secs(30),
                },
                _ => continue,
            };
            let (queue, filter) = match &f.trigger {
                Trigger::Topic(topic) => {
                    let queue = async {
                        cx.services
                            .topics
                            .topic(&topic.topic)
                            .await?
                            .subscribe(&f.name)
                            .await
                    }
                    .await
                    .with_context(|| {
                        format!(
                            "function `{}`: cannot subscribe to topic `{}`",
                            f.name, topic.topic
                        )
                    })?;
                    subscriptions.push(topic.clone());
                    let wanted = topic.clone();
                    let filter: EventFilter =
                        Arc::new(move |e| gust_triggers::topic::matches(&wanted, e));
                    (queue, Some(filter))
                }
                _ => {
                    let queue = queues.queue(&trigger.queue).await.with_context(|| {
                        format!(
                            "function `{}`: cannot open queue `{}`",
                            f.name, trigger.queue
                        )
                    })?;
                    (queue, None)
                }
            };
            let consumer = QueueConsumer {
                function: f.name.clone(),
                trigger,
                retry: f.retry.clone(),
                queue,
                dispatcher: self.events.clone(),
                filter,
            };
            tasks.push(tokio::spawn(consumer.run(shutdown.clone())));
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
            .filter_map(|f| match &f.trigger {
                Trigger::Topic(t) => Some((t.topic.clone(), f.name.clone())),
                _ => None,
            })
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

    /// The consumer of a stream-triggered function.
    async fn stream_consumer(
        &self,
        f: &Function,
        settings: &toml::Table,
        cx: &TriggerContext<'_>,
    ) -> Result<StreamConsumer> {
        let settings = stream_settings(&f.name, settings)?;
        let stream = match settings.stream_config() {
            Some(config) => {
                cx.services
                    .streams
                    .stream_with(&settings.stream, config)
                    .await
            }
            None => cx.services.streams.stream(&settings.stream).await,
        }
        .with_context(|| {
            format!(
                "function `{}`: cannot open stream `{}`",
                f.name, settings.stream
            )
        })?;
        let name = retry_queue(&settings.stream, &f.name);
        let dead_letters = cx
            .services
            .queues
            .queue(&name)
            .await
            .with_context(|| format!("function `{}`: cannot open queue `{name}`", f.name))?;
        Ok(StreamConsumer {
            function: f.name.clone(),
            settings,
            retry: f.retry.clone(),
            stream,
            dead_letters,
            dispatcher: self.events.clone(),
        })
    }

    /// The consumer of the queue through which a stream or change-feed
    /// trigger dead-letters (`<source>--<function>`): what a redrive puts
    /// back there runs the function again, with its retry policy.
    fn redrive_consumer(
        &self,
        f: &Function,
        queue: Arc<dyn gust_backends::Queue>,
    ) -> QueueConsumer {
        QueueConsumer {
            function: f.name.clone(),
            trigger: QueueTrigger {
                queue: queue.name().to_string(),
                batch_size: 16,
                concurrency: 1,
                visibility: std::time::Duration::from_secs(30),
            },
            retry: f.retry.clone(),
            queue,
            dispatcher: self.events.clone(),
            filter: None,
        }
    }

    /// The subscriber of an mqtt-triggered function.
    async fn mqtt_trigger(
        &self,
        f: &Function,
        settings: &toml::Table,
        cx: &TriggerContext<'_>,
    ) -> Result<MqttTrigger> {
        let settings = MqttTriggerSettings::from_table(&f.name, settings)?;
        let broker = match (&settings.broker, &cx.mqtt_broker) {
            (Some(url), _) => BrokerUrl::parse(url)?,
            (None, Some(embedded)) => embedded.clone(),
            (None, None) => bail!(
                "function `{}`: the embedded MQTT broker is not running",
                f.name
            ),
        };
        let name = gust_triggers::mqtt::queue_name(&f.name);
        let queue = cx
            .services
            .queues
            .queue(&name)
            .await
            .with_context(|| format!("function `{}`: cannot open queue `{name}`", f.name))?;
        Ok(MqttTrigger {
            app: self.app.name.clone(),
            function: f.name.clone(),
            settings,
            broker,
            retry: f.retry.clone(),
            queue,
            dispatcher: self.events.clone(),
        })
    }

    /// Whether a function listens on the embedded MQTT broker.
    pub fn needs_embedded_broker(&self) -> bool {
        self.app.functions.iter().any(|f| match &f.trigger {
            Trigger::Event {
                kind: EventTriggerKind::Mqtt,
                settings,
            } => MqttTriggerSettings::from_table(&f.name, settings)
                .map(|s| s.broker.is_none())
                .unwrap_or(false),
            _ => false,
        })
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
        .with_outbound_http(f.outbound_http.clone());
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

/// The settings of a stream trigger, checked.
fn stream_settings(function: &str, settings: &toml::Table) -> Result<StreamTriggerSettings> {
    let parsed: StreamTriggerSettings = settings
        .clone()
        .try_into()
        .with_context(|| format!("function `{function}`: invalid stream trigger settings"))?;
    parsed
        .validate()
        .with_context(|| format!("function `{function}`: invalid stream trigger settings"))?;
    Ok(parsed)
}

/// Checks the settings of the triggers the manifest keeps as written
/// (stream, mqtt) when the app loads, so mistakes stop `gust up` early.
fn check_event_trigger(
    function: &str,
    kind: EventTriggerKind,
    settings: &toml::Table,
) -> Result<()> {
    match kind {
        EventTriggerKind::Stream => stream_settings(function, settings).map(|_| ()),
        EventTriggerKind::Mqtt => MqttTriggerSettings::from_table(function, settings)
            .map(|_| ())
            .map_err(Into::into),
        other => bail!(
            "function `{function}`: {} triggers are not served by this version of gust",
            other.as_str()
        ),
    }
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
                self.1.publish(&topic, &[event]);
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
