//! One trait every trigger kind implements, and the registry that lists
//! them: the host checks, describes and starts every function's trigger
//! through [`kind_of`] in one loop, and `gust up`, `gust ls` and the admin
//! API describe triggers through [`TriggerKind::describe`].
//!
//! A new trigger kind is one module with a [`TriggerKind`] and its line in
//! [`REGISTRY`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gust_backends::mqtt::BrokerUrl;
use gust_backends::{Queue, Services};
use gust_manifest::{Function, Trigger};
use tokio::task::JoinHandle;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::ownership::{Membership, run_owned};
use crate::queue::{QueueConsumer, QueueSettings};
use crate::topic::TopicSettings;

/// A trigger could not be checked or started.
#[derive(Debug, thiserror::Error)]
#[error("function `{function}`: {message}")]
pub struct TriggerError {
    /// The function whose trigger failed.
    pub function: String,
    /// The setting at fault (a key of the trigger's settings table, dotted
    /// when nested), when one is.
    pub field: Option<String>,
    /// What went wrong.
    pub message: String,
    /// How to fix it, when known.
    pub fix: String,
}

impl TriggerError {
    /// An error of `function`'s trigger.
    pub fn new(function: &str, message: impl std::fmt::Display) -> Self {
        Self {
            function: function.to_string(),
            field: None,
            message: message.to_string(),
            fix: String::new(),
        }
    }

    /// The same error, about setting `field`.
    pub fn at(mut self, field: Option<String>) -> Self {
        self.field = field;
        self
    }

    /// The same error, with how to fix it.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
}

/// What starting a trigger may use.
pub struct StartContext<'a> {
    /// The app's name.
    pub app: &'a str,
    /// The function whose trigger starts.
    pub function: &'a Function,
    /// Every function of the app (workflows call activities and children).
    pub functions: &'a [Function],
    /// The app's resources.
    pub services: &'a Services,
    /// Runs the app's event functions.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Fires when this app version's triggers stop.
    pub shutdown: Shutdown,
    /// This node's name in leases.
    pub node: &'a str,
    /// Where the embedded MQTT broker takes Gust's own clients, when it
    /// runs (with its generated account, if devices must authenticate).
    pub mqtt_broker: Option<&'a BrokerUrl>,
    /// The cluster this node is in, if any: then work one node does at a
    /// time (stream partitions, change feeds, blob watchers) is spread over
    /// the nodes through leases ([`crate::ownership`]).
    pub cluster: Option<&'a Arc<Membership>>,
}

impl StartContext<'_> {
    /// An error of this function's trigger.
    pub fn error(&self, message: impl std::fmt::Display) -> TriggerError {
        TriggerError::new(&self.function.name, message)
    }

    /// The queue `name` of the app.
    pub async fn queue(&self, name: &str) -> Result<Arc<dyn Queue>, TriggerError> {
        self.services
            .queues
            .queue(name)
            .await
            .map_err(|e| self.error(format!("cannot open queue `{name}`: {e}")))
    }

    /// Starts `task` until shutdown.
    pub fn spawn<F>(&self, started: &mut Started, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        started.tasks.push(tokio::spawn(task));
    }

    /// Starts `work(i, shutdown)` for each of `claims` (names of the units of
    /// work, such as `stream:<name>:<function>:<partition>`): all here on one
    /// node, or each on the one node of the cluster that owns it.
    pub fn spawn_owned<F, Fut>(&self, started: &mut Started, claims: Vec<String>, work: F)
    where
        F: Fn(usize, Shutdown) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cluster = self
            .cluster
            .map(|m| (m.clone(), self.services.leases.clone()));
        self.spawn(
            started,
            run_owned(cluster, claims, self.shutdown.clone(), work),
        );
    }

    /// Starts a consumer of the queue through which a trigger that is not a
    /// queue (stream, change feed, blob) dead-letters (`<source>--<function>`):
    /// what a redrive puts back there runs the function again, with its
    /// retry policy.
    pub fn start_redrive(&self, started: &mut Started, queue: Arc<dyn Queue>) {
        let consumer = QueueConsumer {
            function: self.function.name.clone(),
            trigger: QueueSettings {
                concurrency: 1,
                ..QueueSettings::new(queue.name())
            },
            retry: self.function.retry.clone(),
            queue,
            dispatcher: self.dispatcher.clone(),
            filter: None,
        };
        self.spawn(started, consumer.run(self.shutdown.clone()));
    }
}

/// What a started trigger left running.
#[derive(Default)]
pub struct Started {
    /// Its tasks; each ends after shutdown, once what it handles settled.
    pub tasks: Vec<JoinHandle<()>>,
    /// The topic subscription it made, for the app's publisher.
    pub subscription: Option<TopicSettings>,
}

/// How a trigger presents itself to people.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The kind (`queue`, `timer`, ...).
    pub kind: &'static str,
    /// Where events come from, in words: ``queue `jobs` ``.
    pub source: String,
    /// Its settings as JSON (the admin API's `trigger` object, `kind`
    /// included).
    pub details: serde_json::Value,
}

impl Description {
    /// A description of a trigger whose settings are kept as written
    /// (stream, mqtt): its settings as JSON, and `source_key`'s value as
    /// the source.
    pub fn from_settings(kind: &'static str, source_key: &str, function: &Function) -> Self {
        let settings = match &function.trigger {
            Trigger::Event { settings, .. } => settings.clone(),
            _ => toml::Table::new(),
        };
        let source = settings
            .get(source_key)
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        let source = format!("{kind} `{source}`");
        let mut details = serde_json::to_value(&settings).unwrap_or_default();
        if let Some(map) = details.as_object_mut() {
            map.insert("kind".into(), kind.into());
        }
        Self {
            kind,
            source,
            details,
        }
    }

    /// The description of a trigger that is not of the kind asked (never
    /// happens through [`kind_of`]).
    pub fn other(kind: &'static str, function: &Function) -> Self {
        Self {
            kind,
            source: function.trigger.kind().to_string(),
            details: serde_json::json!({ "kind": function.trigger.kind() }),
        }
    }
}

/// The boxed future of [`TriggerKind::start`].
pub type StartFuture<'a> = Pin<Box<dyn Future<Output = Result<Started, TriggerError>> + Send + 'a>>;

/// One kind of trigger.
pub trait TriggerKind: Send + Sync {
    /// Its name in `gust.toml` (`trigger = { <name> = { ... } }`).
    fn name(&self) -> &'static str;

    /// Whether this kind serves `trigger`.
    fn serves(&self, trigger: &Trigger) -> bool;

    /// Checks the settings of `function`'s trigger (of this kind), so that
    /// a mistake stops loading the app.
    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        let _ = function;
        Ok(())
    }

    /// Describes `function`'s trigger.
    fn describe(&self, function: &Function) -> Description;

    /// Starts `cx.function`'s trigger: subscribes, opens its source and
    /// spawns its loops. Resolves once events the source accepts from now on
    /// reach the function.
    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a>;
}

/// Every trigger kind Gust serves.
pub static REGISTRY: &[&dyn TriggerKind] = &[
    &crate::http::HttpKind,
    &crate::queue::QueueKind,
    &crate::topic::TopicKind,
    &crate::timer::TimerKind,
    &crate::blob::BlobKind,
    &crate::changefeed::ChangefeedKind,
    &crate::stream::StreamKind,
    &crate::workflow::WorkflowKind,
    &crate::workflow::ActivityKind,
    #[cfg(feature = "mqtt")]
    &crate::mqtt::MqttKind,
];

/// The kind serving `function`'s trigger.
pub fn kind_of(function: &Function) -> Result<&'static dyn TriggerKind, TriggerError> {
    REGISTRY
        .iter()
        .copied()
        .find(|k| k.serves(&function.trigger))
        .ok_or_else(|| {
            TriggerError::new(
                &function.name,
                format!(
                    "{} triggers are not served by this build of gust",
                    function.trigger.kind()
                ),
            )
        })
}

/// Checks `function`'s trigger settings.
pub fn validate(function: &Function) -> Result<(), TriggerError> {
    kind_of(function)?.validate(function)
}

/// Describes `function`'s trigger.
pub fn describe(function: &Function) -> Result<Description, TriggerError> {
    Ok(kind_of(function)?.describe(function))
}
