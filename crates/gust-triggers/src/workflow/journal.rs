//! The journal of workflow instances, kept in Gust's own key-value store
//! `gust:workflows` on the app's kv backend (embedded, PostgreSQL or NATS):
//! one record per instance holding its status, input, output and history,
//! changed only by compare-and-swap so that concurrent writers (activity
//! results of a fan-out, a raised event, a timer) never lose each other's
//! writes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gust_backends::KeyValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The key-value store holding every journal of an app.
pub const STORE: &str = "gust:workflows";

/// Most steps in one instance's history (Temporal caps at 51,200 events;
/// a Gust journal is one record, so it stays smaller).
pub const MAX_HISTORY: usize = 10_000;

/// Most bytes of one instance's journal record.
pub const MAX_JOURNAL_BYTES: usize = 4 << 20;

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, not finished (running a step or waiting).
    Running,
    /// The orchestrator returned its output.
    Completed,
    /// The orchestrator failed, or its journal no longer matches its code.
    Failed,
    /// Stopped through the API.
    Terminated,
}

impl Status {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Terminated => "terminated",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// With this result.
    Ok(Value),
    /// Failed for this reason.
    Err(String),
}

/// One recorded step of an orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `activity`, `sleep`, `event`, `child`, `now` or `random`.
    pub kind: String,
    /// The activity, event or child workflow.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its input as the code gave it.
    #[serde(default)]
    pub input: Value,
    /// When a sleep fires or an event wait times out (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<u64>,
    /// Its outcome, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StepOutcome>,
    /// Whether the work it needs (activity call, timer, child) was handed
    /// to the task queue.
    #[serde(default)]
    pub scheduled: bool,
}

/// The instance that started a child workflow, and at which step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The parent's workflow.
    pub workflow: String,
    /// The parent instance.
    pub id: String,
    /// The parent's step waiting for this child.
    pub step: usize,
}

/// An event raised and not yet taken by a wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Raised {
    /// The event's name.
    pub name: String,
    /// Its payload.
    pub data: Value,
}

/// One workflow instance: everything that survives a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The orchestrator function.
    pub workflow: String,
    /// The instance id.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// What it was started with.
    pub input: Value,
    /// What it returned.
    #[serde(default)]
    pub output: Value,
    /// Why it failed or was terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its steps, in order.
    #[serde(default)]
    pub history: Vec<Step>,
    /// Raised events not yet taken.
    #[serde(default)]
    pub inbox: Vec<Raised>,
    /// The instance that started it, if it is a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// Last changed (ms since the epoch).
    pub updated_ms: u64,
}

impl Instance {
    /// A new running instance.
    pub fn new(workflow: &str, id: &str, input: Value, parent: Option<Parent>) -> Self {
        let now = now_ms();
        Self {
            workflow: workflow.to_string(),
            id: id.to_string(),
            status: Status::Running,
            input,
            output: Value::Null,
            error: None,
            history: Vec::new(),
            inbox: Vec::new(),
            parent,
            created_ms: now,
            updated_ms: now,
        }
    }

    /// Ends the instance (once): `Completed` with `output`, or `Failed` /
    /// `Terminated` with `error`. `false` if it had already ended.
    pub fn finish(&mut self, status: Status, output: Value, error: Option<String>) -> bool {
        if self.status != Status::Running {
            return false;
        }
        self.status = status;
        self.output = output;
        self.error = error;
        true
    }

    /// Appends the steps a run took, or, past [`MAX_HISTORY`], fails the
    /// instance with an error saying so. `true` if they were appended.
    pub fn append(&mut self, steps: &[Step]) -> bool {
        if self.history.len() + steps.len() > MAX_HISTORY {
            let error = format!(
                "history limit reached: workflow `{}` instance `{}` would have {} steps, more than the limit of {MAX_HISTORY}; continue long work in child workflows",
                self.workflow,
                self.id,
                self.history.len() + steps.len()
            );
            self.finish(Status::Failed, Value::Null, Some(error));
            return false;
        }
        self.history.extend(steps.iter().cloned());
        true
    }

    /// Resolves waits that can be resolved now: event waits with a raised
    /// event of their name (oldest first) or past their deadline, and
    /// sleeps past their time. `true` if any step got its outcome.
    pub fn resolve_waits(&mut self, now: u64) -> bool {
        let mut changed = false;
        for step in self.history.iter_mut().filter(|s| s.result.is_none()) {
            match step.kind.as_str() {
                "event" => {
                    if let Some(i) = self.inbox.iter().position(|r| r.name == step.name) {
                        let raised = self.inbox.remove(i);
                        step.result = Some(StepOutcome::Ok(raised.data));
                        changed = true;
                    } else if step.due.is_some_and(|due| due <= now) {
                        step.result = Some(StepOutcome::Err(format!(
                            "timed out waiting for event `{}`",
                            step.name
                        )));
                        changed = true;
                    }
                }
                "sleep" if step.due.is_some_and(|due| due <= now) => {
                    step.result = Some(StepOutcome::Ok(Value::Null));
                    changed = true;
                }
                _ => {}
            }
        }
        changed
    }
}

/// A journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The kv backend failed.
    #[error("workflow journal: {0}")]
    Backend(#[from] gust_backends::BackendError),
    /// A record could not be read.
    #[error("workflow journal record `{key}` is corrupt: {message}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The journals of one app.
#[derive(Clone)]
pub struct Journal {
    kv: Arc<dyn KeyValue>,
}

/// Attempts of one compare-and-swap update before giving up.
const CAS_ATTEMPTS: usize = 1000;

impl Journal {
    /// The journals in `kv` (the store [`STORE`]).
    pub fn new(kv: Arc<dyn KeyValue>) -> Self {
        Self { kv }
    }

    fn key(workflow: &str, id: &str) -> String {
        format!("{workflow}/{id}")
    }

    /// Instance `id` of `workflow`, if it exists.
    pub async fn get(&self, workflow: &str, id: &str) -> Result<Option<Instance>, JournalError> {
        Ok(self.read(&Self::key(workflow, id)).await?.map(|(i, _)| i))
    }

    async fn read(&self, key: &str) -> Result<Option<(Instance, Vec<u8>)>, JournalError> {
        let Some(bytes) = self.kv.get(key).await? else {
            return Ok(None);
        };
        let instance = serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        Ok(Some((instance, bytes)))
    }

    /// Stores `instance` unless one with its id exists; returns the stored
    /// one and whether it was created now.
    pub async fn create(&self, instance: Instance) -> Result<(Instance, bool), JournalError> {
        let key = Self::key(&instance.workflow, &instance.id);
        let bytes = serde_json::to_vec(&instance).expect("instance serialises");
        if self.kv.compare_and_swap(&key, None, bytes).await? {
            return Ok((instance, true));
        }
        match self.read(&key).await? {
            Some((existing, _)) => Ok((existing, false)),
            None => Err(JournalError::Corrupt {
                key,
                message: "vanished while being created".into(),
            }),
        }
    }

    /// Applies `change` to instance `id` of `workflow` until the write wins
    /// the compare-and-swap; `change` returns whether it changed anything
    /// (nothing is written otherwise). Returns the instance as stored, or
    /// `None` if it does not exist.
    pub async fn update<F>(
        &self,
        workflow: &str,
        id: &str,
        mut change: F,
    ) -> Result<Option<Instance>, JournalError>
    where
        F: FnMut(&mut Instance) -> bool,
    {
        let key = Self::key(workflow, id);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut instance, old)) = self.read(&key).await? else {
                return Ok(None);
            };
            if !change(&mut instance) {
                return Ok(Some(instance));
            }
            instance.updated_ms = now_ms();
            let mut bytes = serde_json::to_vec(&instance).expect("instance serialises");
            if bytes.len() > MAX_JOURNAL_BYTES && instance.status == Status::Running {
                // Keep the record within bounds: fail the instance instead.
                let mut failed = instance.clone();
                failed.history.truncate(failed.history.len().min(16));
                failed.status = Status::Failed;
                failed.error = Some(format!(
                    "the journal of workflow `{workflow}` instance `{id}` would grow to {} bytes (limit {MAX_JOURNAL_BYTES}); pass large data by reference (a blob or table key) and split long work into child workflows",
                    bytes.len()
                ));
                instance = failed;
                bytes = serde_json::to_vec(&instance).expect("instance serialises");
            }
            if self.kv.compare_and_swap(&key, Some(&old), bytes).await? {
                return Ok(Some(instance));
            }
            tokio::task::yield_now().await;
        }
        Err(JournalError::Corrupt {
            key,
            message: format!("{CAS_ATTEMPTS} concurrent updates in a row; try again"),
        })
    }

    /// Up to `limit` instances (of `workflow`, if given), in key order.
    pub async fn list(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Instance>, JournalError> {
        let prefix = workflow.map(|w| format!("{w}/"));
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.kv.list_keys(cursor, 500).await?;
            for key in &page.keys {
                if prefix.as_ref().is_some_and(|p| !key.starts_with(p)) {
                    continue;
                }
                if let Some((instance, _)) = self.read(key).await? {
                    out.push(instance);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_backends::KeyValueProvider;
    use gust_backends::embedded::EmbeddedKv;

    #[tokio::test]
    async fn create_is_idempotent_and_updates_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb"))
            .unwrap()
            .open(STORE)
            .unwrap();
        let journal = Journal::new(kv);
        let (_, created) = journal
            .create(Instance::new("w", "a", Value::from(1), None))
            .await
            .unwrap();
        assert!(created);
        let (again, created) = journal
            .create(Instance::new("w", "a", Value::from(2), None))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.input, Value::from(1));
        let updated = journal
            .update("w", "a", |i| {
                i.finish(Status::Completed, Value::from(3), None)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.status, Status::Completed);
        assert_eq!(journal.list(Some("w"), 10).await.unwrap().len(), 1);
        assert!(journal.get("w", "b").await.unwrap().is_none());
    }

    #[test]
    fn a_history_past_the_limit_fails_the_instance() {
        let step = Step {
            kind: "now".into(),
            name: String::new(),
            input: Value::Null,
            due: None,
            result: Some(StepOutcome::Ok(Value::from(1))),
            scheduled: true,
        };
        let mut i = Instance::new("w", "a", Value::Null, None);
        assert!(i.append(&vec![step.clone(); MAX_HISTORY - 1]));
        assert!(i.append(std::slice::from_ref(&step)));
        assert_eq!(i.status, Status::Running);
        assert!(!i.append(std::slice::from_ref(&step)));
        assert_eq!(i.status, Status::Failed);
        assert_eq!(i.history.len(), MAX_HISTORY);
        let error = i.error.unwrap();
        assert!(
            error.contains("history limit") && error.contains("10000"),
            "{error}"
        );
    }

    #[test]
    fn waits_resolve_from_the_inbox_or_the_clock() {
        let mut i = Instance::new("w", "a", Value::Null, None);
        let step = |kind: &str, name: &str, due| Step {
            kind: kind.into(),
            name: name.into(),
            input: Value::Null,
            due,
            result: None,
            scheduled: true,
        };
        i.history.push(step("event", "approved", Some(1000)));
        i.history.push(step("sleep", "", Some(500)));
        assert!(!i.resolve_waits(100));
        i.inbox.push(Raised {
            name: "approved".into(),
            data: Value::from(true),
        });
        assert!(i.resolve_waits(100));
        assert_eq!(
            i.history[0].result,
            Some(StepOutcome::Ok(Value::from(true)))
        );
        assert!(i.resolve_waits(600));
        assert_eq!(i.history[1].result, Some(StepOutcome::Ok(Value::Null)));
        i.history.push(step("event", "late", Some(700)));
        assert!(i.resolve_waits(800));
        assert!(matches!(i.history[2].result, Some(StepOutcome::Err(_))));
    }
}
