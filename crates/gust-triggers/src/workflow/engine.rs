//! The workflow engine of one orchestrator function: consumes its task
//! queue (`<workflow>--workflow`) and carries out each task against the
//! journal.
//!
//! * `run`: replay the orchestrator from the journal ([`super::runs`]),
//!   append the steps it took past the end, finish the instance when it
//!   returned its output, and schedule the work the new steps need.
//! * `activity`: call an activity function through the dispatcher with its
//!   retry policy (one settle path: [`crate::settle::settle`]) and an
//!   idempotency key (`<workflow>:<id>:<step>`), record its result, run the
//!   orchestrator again.
//! * `timer`: a sleep or an event wait's deadline; the message comes back
//!   (queue delay) until it is due, so timers survive restarts.
//!
//! Every task is acknowledged only after what it did is in the journal and
//! the tasks it led to are queued: a crash at any point re-delivers it, and
//! replaying is safe because recorded steps are answered from the journal.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gust_backends::{Delivery, Queue, Services};
use gust_events::workflow::RUN_EXTENSION;
use gust_events::{Event, Outcome};
use gust_manifest::RetryPolicy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::journal::{Instance, Journal, JournalError, Status, StepOutcome, now_ms};
use super::runs::{Callables, OrchestratorRun, Run, runs};
use crate::dispatch::{Dispatcher, Shutdown};
use crate::settle::{Settlement, settle};

/// Longest wait of one receive call (bounds shutdown latency).
const POLL: Duration = Duration::from_millis(500);
/// Lease of a task, renewed while it runs.
const VISIBILITY: Duration = Duration::from_secs(60);
/// Longest a timer message waits in the queue before it is looked at again.
const TIMER_RECHECK: Duration = Duration::from_secs(3600);

/// The task queue of `workflow`.
pub fn task_queue(workflow: &str) -> String {
    format!("{workflow}--workflow")
}

/// One unit of work on a task queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    /// Replay the orchestrator of instance `id`.
    Run {
        /// The instance.
        id: String,
    },
    /// Call the activity of step `step`.
    Activity {
        /// The instance.
        id: String,
        /// The step.
        step: usize,
    },
    /// Fire the timer of step `step` once due.
    Timer {
        /// The instance.
        id: String,
        /// The step.
        step: usize,
    },
}

/// Queues `task` for `workflow`.
pub async fn send_task(
    services: &Services,
    workflow: &str,
    task: &Task,
) -> Result<(), JournalError> {
    let queue = services.queues.queue(&task_queue(workflow)).await?;
    let body = serde_json::to_vec(task).expect("task serialises");
    let metadata = BTreeMap::from([("content-type".to_string(), "application/json".to_string())]);
    queue.send(body, metadata).await?;
    Ok(())
}

/// What to do with a task message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Acknowledge it.
    Ack,
    /// Let it come back after this delay.
    Later(Duration),
}

/// The engine of one orchestrator function.
pub struct Engine {
    /// The orchestrator function.
    pub workflow: String,
    /// Its retry policy (for traps and timeouts of a run).
    pub retry: RetryPolicy,
    /// Tasks handled at once.
    pub concurrency: usize,
    /// The app's resources.
    pub services: Services,
    /// The journals.
    pub journal: Journal,
    /// Runs functions.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// What the orchestrator may call.
    pub callables: Arc<Callables>,
    /// Retry policies of the app's activities.
    pub policies: HashMap<String, RetryPolicy>,
    /// Instances whose orchestrator runs on this node now, and whether
    /// another run was asked for meanwhile.
    active: Mutex<HashMap<String, bool>>,
}

impl Engine {
    /// An engine; see the fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workflow: String,
        retry: RetryPolicy,
        concurrency: usize,
        services: Services,
        journal: Journal,
        dispatcher: Arc<dyn Dispatcher>,
        callables: Arc<Callables>,
        policies: HashMap<String, RetryPolicy>,
    ) -> Self {
        Self {
            workflow,
            retry,
            concurrency,
            services,
            journal,
            dispatcher,
            callables,
            policies,
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Consumes the task queue until `shutdown`; then lets running tasks
    /// finish.
    pub async fn run(self: Arc<Self>, queue: Arc<dyn Queue>, mut shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            if shutdown.is_requested() {
                break;
            }
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore open"),
                () = shutdown.requested() => break,
            };
            let room = (permits.available_permits() + 1).min(64);
            let received = tokio::select! {
                r = queue.receive(room, VISIBILITY, POLL) => r,
                () = shutdown.requested() => break,
            };
            let deliveries = match received {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(workflow = %self.workflow, "workflow tasks: receive failed, retrying: {e}");
                    drop(first);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for delivery in deliveries {
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore open"),
                };
                let (this, queue) = (self.clone(), queue.clone());
                tokio::spawn(async move {
                    this.handle(queue, delivery).await;
                    drop(permit);
                });
            }
        }
        let _ = permits.acquire_many(self.concurrency as u32).await;
    }

    async fn handle(&self, queue: Arc<dyn Queue>, delivery: Delivery) {
        let receipt = delivery.receipt.clone();
        let task: Task = match serde_json::from_slice(&delivery.message.body) {
            Ok(t) => t,
            Err(e) => {
                let _ = queue
                    .dead_letter(&receipt, &format!("not a workflow task: {e}"))
                    .await;
                return;
            }
        };
        let renew = {
            let (queue, receipt) = (queue.clone(), receipt.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(VISIBILITY / 2);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if queue.extend(&receipt, VISIBILITY).await.is_err() {
                        return;
                    }
                }
            })
        };
        let attempt = delivery.message.attempt.max(1);
        let done = match &task {
            Task::Run { id } => self.run_instance(id, attempt).await,
            Task::Activity { id, step } => self.activity(id, *step, attempt).await,
            Task::Timer { id, step } => self.timer(id, *step).await,
        };
        renew.abort();
        let settled = match done {
            Ok(Done::Ack) => queue.ack(&receipt).await,
            Ok(Done::Later(delay)) => queue.nack(&receipt, delay).await,
            Err(e) => {
                tracing::warn!(workflow = %self.workflow, ?task, "workflow task failed, retrying: {e}");
                queue.nack(&receipt, Duration::from_secs(1)).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(workflow = %self.workflow, "could not settle a workflow task: {e}");
        }
    }

    /// Runs the orchestrator of `id`, again as long as runs were asked for
    /// while it ran (several activities of a fan-out finishing together
    /// lead to one or two runs, not one each).
    async fn run_instance(&self, id: &str, attempt: u32) -> Result<Done, JournalError> {
        {
            let mut active = self.active.lock().expect("active lock");
            if let Some(again) = active.get_mut(id) {
                *again = true;
                return Ok(Done::Ack);
            }
            active.insert(id.to_string(), false);
        }
        loop {
            let done = self.run_once(id, attempt).await;
            let mut active = self.active.lock().expect("active lock");
            if matches!(done, Ok(Done::Ack)) && active.get(id) == Some(&true) {
                active.insert(id.to_string(), false);
                continue;
            }
            active.remove(id);
            return done;
        }
    }

    async fn run_once(&self, id: &str, attempt: u32) -> Result<Done, JournalError> {
        let Some(instance) = self.journal.get(&self.workflow, id).await? else {
            tracing::warn!(workflow = %self.workflow, id, "run of an unknown instance dropped");
            return Ok(Done::Ack);
        };
        if instance.status != Status::Running {
            // Finished: make sure a parent heard of it (a crash may have
            // come between the two writes).
            self.notify_parent(&instance).await?;
            return Ok(Done::Ack);
        }
        // Work recorded by a run that crashed before queuing it.
        self.schedule(&instance).await?;

        let base = instance.history.len();
        let token = runs().begin(Run::Orchestrator(OrchestratorRun {
            history: instance.history.clone(),
            new: Vec::new(),
            output: None,
            mismatch: None,
            callables: self.callables.clone(),
        }));
        let mut event = Event {
            id: format!("{}:{id}:run:{base}", self.workflow),
            source: format!("/gust/workflow/{}", self.workflow),
            ty: "gust.workflow.run".into(),
            subject: Some(id.to_string()),
            time: Some(gust_events::rfc3339(std::time::SystemTime::now())),
            datacontenttype: Some("application/json".into()),
            data: serde_json::to_vec(&instance.input).expect("json"),
            extensions: vec![(RUN_EXTENSION.to_string(), token.clone())],
            attempt,
        };
        event.ensure_traceparent();
        let outcome = self.dispatcher.dispatch(&self.workflow, event).await;
        let Some(Run::Orchestrator(run)) = runs().end(&token) else {
            unreachable!("the run was registered above");
        };

        // What the run decided.
        let finish: Option<(Status, Value, Option<String>)> = if let Some(m) = run.mismatch {
            Some((Status::Failed, Value::Null, Some(m)))
        } else {
            match &outcome {
                Outcome::Done => run.output.clone().map(|out| (Status::Completed, out, None)),
                Outcome::Fail(reason) => Some((Status::Failed, Value::Null, Some(reason.clone()))),
                Outcome::Retry(_) => match settle(&outcome, attempt, &self.retry) {
                    Settlement::Retry(delay) => return Ok(Done::Later(delay)),
                    Settlement::DeadLetter(reason) => {
                        Some((Status::Failed, Value::Null, Some(reason)))
                    }
                    Settlement::Ack => None,
                },
            }
        };
        let new = run.new;
        let mut resolved = false;
        let updated = self
            .journal
            .update(&self.workflow, id, |i| {
                resolved = false;
                if i.status != Status::Running || i.history.len() != base {
                    // Terminated meanwhile, or another run got there first.
                    return false;
                }
                if !i.append(&new) {
                    return true;
                }
                if let Some((status, output, error)) = finish.clone() {
                    i.finish(status, output, error);
                } else {
                    resolved = i.resolve_waits(now_ms());
                }
                true
            })
            .await?;
        let Some(updated) = updated else {
            return Ok(Done::Ack);
        };
        if updated.status != Status::Running {
            if let Some(error) = &updated.error {
                tracing::info!(workflow = %self.workflow, id, "workflow {}: {error}", updated.status.as_str());
            }
            self.notify_parent(&updated).await?;
            return Ok(Done::Ack);
        }
        self.schedule(&updated).await?;
        if resolved {
            send_task(
                &self.services,
                &self.workflow,
                &Task::Run { id: id.to_string() },
            )
            .await?;
        }
        Ok(Done::Ack)
    }

    /// Queues the work of every recorded step that needs some and was not
    /// queued yet, then marks those steps scheduled.
    async fn schedule(&self, instance: &Instance) -> Result<(), JournalError> {
        let mut queued = Vec::new();
        for (n, step) in instance.history.iter().enumerate() {
            if step.scheduled || step.result.is_some() {
                continue;
            }
            let id = instance.id.clone();
            match step.kind.as_str() {
                "activity" => {
                    send_task(
                        &self.services,
                        &self.workflow,
                        &Task::Activity { id, step: n },
                    )
                    .await?
                }
                "sleep" | "event" if step.due.is_some() => {
                    send_task(&self.services, &self.workflow, &Task::Timer { id, step: n }).await?
                }
                "child" => {
                    let child_id = format!("{}.{n}", instance.id);
                    let child = Instance::new(
                        &step.name,
                        &child_id,
                        step.input.clone(),
                        Some(super::journal::Parent {
                            workflow: instance.workflow.clone(),
                            id: instance.id.clone(),
                            step: n,
                        }),
                    );
                    self.journal.create(child).await?;
                    send_task(&self.services, &step.name, &Task::Run { id: child_id }).await?
                }
                _ => {}
            }
            queued.push(n);
        }
        if !queued.is_empty() {
            self.journal
                .update(&instance.workflow, &instance.id, |i| {
                    let mut changed = false;
                    for &n in &queued {
                        if let Some(step) = i.history.get_mut(n).filter(|s| !s.scheduled) {
                            step.scheduled = true;
                            changed = true;
                        }
                    }
                    changed
                })
                .await?;
        }
        Ok(())
    }

    /// Tells the parent of a finished child instance its outcome.
    async fn notify_parent(&self, child: &Instance) -> Result<(), JournalError> {
        notify_parent(&self.services, &self.journal, child).await
    }

    async fn activity(&self, id: &str, n: usize, attempt: u32) -> Result<Done, JournalError> {
        let Some(instance) = self.journal.get(&self.workflow, id).await? else {
            return Ok(Done::Ack);
        };
        let Some(step) = instance.history.get(n) else {
            return Ok(Done::Ack);
        };
        if instance.status != Status::Running {
            return Ok(Done::Ack);
        }
        if step.result.is_some() {
            // Done before a crash that came before the run was queued.
            return self.rerun(id).await;
        }
        let policy = self.policies.get(&step.name).cloned().unwrap_or_default();
        let token = runs().begin(Run::Activity(None));
        let key = format!("{}:{id}:{n}", self.workflow);
        let mut event = Event {
            id: key.clone(),
            source: format!("/gust/workflow/{}/activity/{}", self.workflow, step.name),
            ty: "gust.workflow.activity".into(),
            subject: Some(id.to_string()),
            time: Some(gust_events::rfc3339(std::time::SystemTime::now())),
            datacontenttype: Some("application/json".into()),
            data: serde_json::to_vec(&step.input).expect("json"),
            extensions: vec![
                (RUN_EXTENSION.to_string(), token.clone()),
                ("idempotencykey".to_string(), key),
            ],
            attempt,
        };
        event.ensure_traceparent();
        let outcome = self.dispatcher.dispatch(&step.name, event).await;
        let output = match runs().end(&token) {
            Some(Run::Activity(output)) => output.unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let result = match settle(&outcome, attempt, &policy) {
            Settlement::Ack => StepOutcome::Ok(output),
            Settlement::Retry(delay) => return Ok(Done::Later(delay)),
            Settlement::DeadLetter(reason) => {
                StepOutcome::Err(format!("activity `{}` failed: {reason}", step.name))
            }
        };
        self.journal
            .update(&self.workflow, id, |i| match i.history.get_mut(n) {
                Some(s) if i.status == Status::Running && s.result.is_none() => {
                    s.result = Some(result.clone());
                    true
                }
                _ => false,
            })
            .await?;
        self.rerun(id).await
    }

    /// Queues a run of `id`, then acknowledges.
    async fn rerun(&self, id: &str) -> Result<Done, JournalError> {
        send_task(
            &self.services,
            &self.workflow,
            &Task::Run { id: id.to_string() },
        )
        .await?;
        Ok(Done::Ack)
    }

    async fn timer(&self, id: &str, n: usize) -> Result<Done, JournalError> {
        let Some(instance) = self.journal.get(&self.workflow, id).await? else {
            return Ok(Done::Ack);
        };
        let Some(step) = instance.history.get(n) else {
            return Ok(Done::Ack);
        };
        if instance.status != Status::Running {
            return Ok(Done::Ack);
        }
        if step.result.is_some() {
            return self.rerun(id).await;
        }
        let now = now_ms();
        let due = step.due.unwrap_or(now);
        if due > now {
            return Ok(Done::Later(
                Duration::from_millis(due - now).min(TIMER_RECHECK),
            ));
        }
        let mut resolved = false;
        self.journal
            .update(&self.workflow, id, |i| {
                resolved = i.status == Status::Running && i.resolve_waits(now);
                resolved
            })
            .await?;
        if resolved {
            send_task(
                &self.services,
                &self.workflow,
                &Task::Run { id: id.to_string() },
            )
            .await?;
        }
        Ok(Done::Ack)
    }
}

/// Gives the parent of `child` (a finished instance) the child's outcome
/// and runs the parent again. Does nothing for a top-level instance or a
/// parent step that has its outcome already.
pub async fn notify_parent(
    services: &Services,
    journal: &Journal,
    child: &Instance,
) -> Result<(), JournalError> {
    let Some(parent) = &child.parent else {
        return Ok(());
    };
    if child.status == Status::Running {
        return Ok(());
    }
    let outcome = match child.status {
        Status::Completed => StepOutcome::Ok(child.output.clone()),
        other => StepOutcome::Err(format!(
            "child workflow `{}` instance `{}` {}: {}",
            child.workflow,
            child.id,
            other.as_str(),
            child.error.as_deref().unwrap_or("no reason given")
        )),
    };
    let updated = journal
        .update(&parent.workflow, &parent.id, |i| {
            if let Some(s) = i.history.get_mut(parent.step)
                && i.status == Status::Running
                && s.result.is_none()
            {
                s.result = Some(outcome.clone());
                return true;
            }
            false
        })
        .await?;
    // Also when the outcome was recorded before a crash: a run too many
    // replays and finds nothing new.
    if updated.is_some_and(|p| p.status == Status::Running) {
        send_task(
            services,
            &parent.workflow,
            &Task::Run {
                id: parent.id.clone(),
            },
        )
        .await?;
    }
    Ok(())
}
