//! Subscriber `update-task` of the topic `tasks`: keeps one task document
//! per task in the table `tasks`, the read model behind `GET /api/tasks/{id}`.
//!
//! Events of one task are applied in `seq` order. A redelivered event is
//! skipped; an event that overtook its predecessor (deliveries of a topic
//! subscription are not ordered) fails with a retryable error, so the
//! platform tries it again after a backoff, by which time the gap is
//! filled. A body that is not a task event is a fatal error: the event goes
//! to the subscription's dead letters (`gust queue dlq list tasks--update-task`).

use gust_sdk::table::Table;
use gust_sdk::{Event, EventError, log};
use serde::{Deserialize, Serialize};
use task_events::{Change, Progress, TaskEvent, progress};

/// The task document.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TaskDocument {
    id: String,
    title: String,
    priority: String,
    /// `open`, `assigned` or `completed`.
    status: String,
    assignee: Option<String>,
    created_at: String,
    completed_at: Option<String>,
    completed_by: Option<String>,
    /// Every event applied, oldest first.
    history: Vec<TaskEvent>,
    /// The `seq` of the newest event applied.
    version: u64,
}

/// Folds one task event into its task document.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let e = TaskEvent::parse(event.data()).map_err(EventError::fatal)?;
    let tasks = Table::open("tasks");
    let mut doc: TaskDocument = tasks.get_json(&e.task)?.unwrap_or_else(|| TaskDocument {
        id: e.task.clone(),
        ..TaskDocument::default()
    });
    match progress(doc.version, e.seq) {
        Progress::Seen => return Ok(()),
        Progress::Early { expected } => {
            return Err(EventError::retryable(format!(
                "task {}: event {} arrived before event {expected}",
                e.task, e.seq
            )));
        }
        Progress::Apply => {}
    }
    match &e.change {
        Change::Created {
            title,
            priority,
            assignee,
        } => {
            doc.title.clone_from(title);
            doc.priority.clone_from(priority);
            doc.assignee.clone_from(assignee);
            doc.status = if assignee.is_some() {
                "assigned"
            } else {
                "open"
            }
            .into();
            doc.created_at.clone_from(&e.at);
        }
        Change::Assigned { assignee } => {
            doc.assignee = Some(assignee.clone());
            doc.status = "assigned".into();
        }
        Change::Completed { by, .. } => {
            doc.status = "completed".into();
            doc.completed_at = Some(e.at.clone());
            doc.completed_by = Some(by.clone());
        }
    }
    doc.version = e.seq;
    doc.history.push(e);
    tasks.put_json(&doc.id, &doc)?;
    log::info!("task {}: {} at version {}", doc.id, doc.status, doc.version);
    Ok(())
}
