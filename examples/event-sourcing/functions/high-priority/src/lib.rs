//! Subscriber `record-high-priority` of the topic `tasks`, with a filter:
//! it only receives `com.example.task.completed` events whose subject starts
//! with `high/` (the command side publishes with subject
//! `<priority>/<task>`), so it never even runs for other events. It records
//! each completed high-priority task in the table `high-priority`
//! (`GET /api/reports/high-priority`).
//!
//! A body that is not a completed task event is a fatal error: the event
//! goes to the subscription's dead letters, listed by
//! `gust queue dlq list tasks--record-high-priority`.

use gust_sdk::table::Table;
use gust_sdk::{Event, EventError, log};
use serde::Serialize;
use task_events::{Change, TaskEvent};

/// One completed high-priority task.
#[derive(Debug, Serialize)]
struct Completion<'a> {
    task: &'a str,
    completed_by: &'a str,
    completed_at: &'a str,
    /// The CloudEvents id of the notification.
    event_id: &'a str,
}

/// Records a completed high-priority task (idempotent: keyed by task).
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let e = TaskEvent::parse(event.data()).map_err(EventError::fatal)?;
    let Change::Completed { by, priority } = &e.change else {
        return Err(EventError::fatal(format!(
            "expected a completed task event, got {}",
            e.event_type()
        )));
    };
    if priority != "high" {
        return Err(EventError::fatal(format!(
            "task {} has priority {priority}, not high: the subject `{}` lies",
            e.task,
            event.subject().unwrap_or("")
        )));
    }
    let record = Completion {
        task: &e.task,
        completed_by: by,
        completed_at: &e.at,
        event_id: event.id(),
    };
    Table::open("report").put_json(&e.task, &record)?;
    log::info!("high-priority task {} completed by {by}", e.task);
    Ok(())
}
