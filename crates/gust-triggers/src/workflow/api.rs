//! The management operations of workflows (what `/_gust/workflows/...` and
//! `gust workflows` do): start, status, raise an event, terminate, list.

use gust_backends::Services;
use gust_manifest::Function;
use serde_json::Value;

use super::engine::{Task, notify_parent, send_task};
use super::journal::{Instance, Journal, JournalError, Raised, STORE, Status, now_ms};

/// Why a management operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No orchestrator function of that name.
    #[error("no workflow `{0}` in this app (a function with trigger = {{ workflow = {{}} }})")]
    UnknownWorkflow(String),
    /// No instance of that id.
    #[error("workflow `{workflow}` has no instance `{id}`")]
    UnknownInstance {
        /// The workflow.
        workflow: String,
        /// The id asked for.
        id: String,
    },
    /// The instance has finished.
    #[error("workflow `{workflow}` instance `{id}` is {status} and takes no more {what}")]
    Finished {
        /// The workflow.
        workflow: String,
        /// The instance.
        id: String,
        /// Its status.
        status: &'static str,
        /// What was refused (`events`, `termination`).
        what: &'static str,
    },
    /// A malformed id or name.
    #[error("{0}")]
    BadInput(String),
    /// The journal's backend failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The journals of the app on `services`.
pub fn journal(services: &Services) -> Result<Journal, JournalError> {
    Ok(Journal::new(services.kv.open(STORE)?))
}

/// Checks an instance id or event name: 1 to 128 of letters, digits, `-`,
/// `_`, `.`.
pub fn check_name(what: &str, name: &str) -> Result<(), WorkflowError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(WorkflowError::BadInput(format!(
            "`{name}` is not a valid {what} (1 to 128 letters, digits, `-`, `_`, `.`)"
        )))
    }
}

fn check_workflow(functions: &[Function], workflow: &str) -> Result<(), WorkflowError> {
    if functions
        .iter()
        .any(|f| f.name == workflow && super::is_workflow(f))
    {
        Ok(())
    } else {
        Err(WorkflowError::UnknownWorkflow(workflow.to_string()))
    }
}

/// Starts `workflow` with `input`, as instance `id` (a new random id when
/// `None`). Starting an id that exists changes nothing (idempotent start);
/// the second value says whether it was created now.
pub async fn start(
    services: &Services,
    functions: &[Function],
    workflow: &str,
    id: Option<String>,
    input: Value,
) -> Result<(Instance, bool), WorkflowError> {
    check_workflow(functions, workflow)?;
    let id = id.unwrap_or_else(gust_events::new_id);
    check_name("instance id", &id)?;
    let journal = journal(services)?;
    let (instance, created) = journal
        .create(Instance::new(workflow, &id, input, None))
        .await?;
    if instance.status == Status::Running {
        // Also for an existing instance: its first run may have been lost to
        // a crash right after it was created; a run too many is harmless.
        send_task(services, workflow, &Task::Run { id }).await?;
    }
    Ok((instance, created))
}

/// Instance `id` of `workflow`.
pub async fn status(
    services: &Services,
    functions: &[Function],
    workflow: &str,
    id: &str,
) -> Result<Instance, WorkflowError> {
    check_workflow(functions, workflow)?;
    check_name("instance id", id)?;
    journal(services)?
        .get(workflow, id)
        .await?
        .ok_or_else(|| WorkflowError::UnknownInstance {
            workflow: workflow.to_string(),
            id: id.to_string(),
        })
}

/// Raises event `name` with `data` on instance `id`: a wait for it takes it
/// (now or later); a finished instance refuses it.
pub async fn raise(
    services: &Services,
    functions: &[Function],
    workflow: &str,
    id: &str,
    name: &str,
    data: Value,
) -> Result<Instance, WorkflowError> {
    check_name("event name", name)?;
    let current = status(services, functions, workflow, id).await?;
    finished(&current, "events")?;
    let journal = journal(services)?;
    let updated = journal
        .update(workflow, id, |i| {
            if i.status != Status::Running {
                return false;
            }
            i.inbox.push(Raised {
                name: name.to_string(),
                data: data.clone(),
            });
            i.resolve_waits(now_ms());
            true
        })
        .await?
        .ok_or_else(|| WorkflowError::UnknownInstance {
            workflow: workflow.to_string(),
            id: id.to_string(),
        })?;
    finished(&updated, "events")?;
    send_task(services, workflow, &Task::Run { id: id.to_string() }).await?;
    Ok(updated)
}

/// Terminates instance `id` (its pending work is dropped as it comes up).
pub async fn terminate(
    services: &Services,
    functions: &[Function],
    workflow: &str,
    id: &str,
    reason: Option<String>,
) -> Result<Instance, WorkflowError> {
    let current = status(services, functions, workflow, id).await?;
    finished(&current, "termination")?;
    let journal = journal(services)?;
    let reason = reason.unwrap_or_else(|| "terminated through the API".to_string());
    let updated = journal
        .update(workflow, id, |i| {
            i.finish(Status::Terminated, Value::Null, Some(reason.clone()))
        })
        .await?
        .ok_or_else(|| WorkflowError::UnknownInstance {
            workflow: workflow.to_string(),
            id: id.to_string(),
        })?;
    notify_parent(services, &journal, &updated).await?;
    Ok(updated)
}

/// Up to `limit` instances, of `workflow` if given.
pub async fn list(
    services: &Services,
    functions: &[Function],
    workflow: Option<&str>,
    limit: usize,
) -> Result<Vec<Instance>, WorkflowError> {
    if let Some(w) = workflow {
        check_workflow(functions, w)?;
    }
    Ok(journal(services)?.list(workflow, limit).await?)
}

fn finished(instance: &Instance, what: &'static str) -> Result<(), WorkflowError> {
    if instance.status == Status::Running {
        Ok(())
    } else {
        Err(WorkflowError::Finished {
            workflow: instance.workflow.clone(),
            id: instance.id.clone(),
            status: instance.status.as_str(),
            what,
        })
    }
}
