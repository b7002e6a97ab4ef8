//! Durable workflows: the `workflow` trigger kind (an orchestrator, replayed
//! from its journal) and the `activity` kind (a function orchestrators call),
//! plus the management operations behind `/_gust/workflows/...`.
//!
//! * [`journal`]: instance records on the app's kv backend (`gust:workflows`).
//! * [`runs`]: answers `gust:function/workflow` while a run executes.
//! * [`engine`]: the task queue consumer that runs orchestrators,
//!   activities and timers.
//! * [`api`]: start, status, raise, terminate, list.

pub mod api;
pub mod engine;
pub mod journal;
pub mod runs;

use std::collections::HashMap;
use std::sync::Arc;

use gust_manifest::{EventTriggerKind, Function, Trigger};
use serde::Deserialize;

use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings, check_range};

pub use runs::host;

/// `trigger = { workflow = { concurrency = 64 } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSettings {
    /// Tasks (orchestrator runs, activity calls, timers) of this workflow
    /// handled at once on one node (1 to 10000, default 64).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_concurrency() -> u32 {
    64
}

impl Settings for WorkflowSettings {
    const KIND: &'static str = "workflow";
    const HELP: &'static str = "workflow triggers take `concurrency = 1..10000` (or nothing: `trigger = { workflow = {} }`)";

    fn check(&self) -> Result<(), Invalid> {
        check_range("concurrency", self.concurrency, 1..=10_000)
    }
}

/// `trigger = { activity = {} }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivitySettings {}

impl Settings for ActivitySettings {
    const KIND: &'static str = "activity";
    const HELP: &'static str = "activity triggers take no settings: `trigger = { activity = {} }` (retries come from the function's `retry`)";

    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

fn is_kind(function: &Function, kind: EventTriggerKind) -> bool {
    matches!(&function.trigger, Trigger::Event { kind: k, .. } if *k == kind)
}

/// Whether `function` is an orchestrator.
pub fn is_workflow(function: &Function) -> bool {
    is_kind(function, EventTriggerKind::Workflow)
}

/// What the orchestrators of an app may call.
pub fn callables(functions: &[Function]) -> runs::Callables {
    runs::Callables {
        activities: functions
            .iter()
            .filter(|f| is_kind(f, EventTriggerKind::Activity))
            .map(|f| f.name.clone())
            .collect(),
        workflows: functions
            .iter()
            .filter(|f| is_workflow(f))
            .map(|f| f.name.clone())
            .collect(),
    }
}

/// The `workflow` trigger kind.
pub struct WorkflowKind;

impl TriggerKind for WorkflowKind {
    fn name(&self) -> &'static str {
        "workflow"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Workflow,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        WorkflowSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        let Ok(s) = WorkflowSettings::of(function) else {
            return Description::other(self.name(), function);
        };
        Description {
            kind: "workflow",
            source: format!(
                "workflow `{}` (POST /_gust/workflows/{})",
                function.name, function.name
            ),
            details: serde_json::json!({ "kind": "workflow", "concurrency": s.concurrency }),
        }
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let settings = WorkflowSettings::of(cx.function)?;
            let queue = cx.queue(&engine::task_queue(&cx.function.name)).await?;
            let journal = api::journal(cx.services).map_err(|e| cx.error(e))?;
            let policies: HashMap<_, _> = cx
                .functions
                .iter()
                .map(|f| (f.name.clone(), f.retry.clone()))
                .collect();
            let engine = Arc::new(engine::Engine::new(
                cx.function.name.clone(),
                cx.function.retry.clone(),
                settings.concurrency as usize,
                cx.services.clone(),
                journal,
                cx.dispatcher.clone(),
                Arc::new(callables(cx.functions)),
                policies,
            ));
            let mut started = Started::default();
            cx.spawn(&mut started, engine.run(queue, cx.shutdown.clone()));
            Ok(started)
        })
    }
}

/// The `activity` trigger kind: nothing to start; workflows call it.
pub struct ActivityKind;

impl TriggerKind for ActivityKind {
    fn name(&self) -> &'static str {
        "activity"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Activity,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        ActivitySettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        Description {
            kind: "activity",
            source: format!("activity `{}` (called by workflows)", function.name),
            details: serde_json::json!({ "kind": "activity" }),
        }
    }

    fn start<'a>(&'a self, _cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move { Ok(Started::default()) })
    }
}
