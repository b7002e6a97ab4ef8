//! The per-user read model of the event-sourcing example: for each user,
//! the tasks they have open and the ones they completed, in the table bound
//! as `users` (documents `user/<name>/<task>`, grouped per user by
//! `GET /api/users/{name}`).
//!
//! The same code runs as two functions:
//!
//! * `track-users`, a subscriber of the topic `tasks`, maintains the model
//!   incrementally as commands happen;
//! * `replay-users`, a consumer of the stream `task-events` from `earliest`,
//!   builds it from the event log alone, into another table. Deploying it
//!   (or renaming it, which drops its checkpoint) rebuilds the model from
//!   the first event ever recorded.
//!
//! Both apply a task's events in `seq` order, remembering the task's title,
//! priority, assignee and last `seq` in `task/<id>`. The model is one
//! document per user and task, `user/<name>/<task>`, written only by that
//! task's events: handlers of different tasks run at the same time (stream
//! partitions, concurrent deliveries) but never write the same document, so
//! no update is lost. Applying an event only sets or removes documents, so
//! applying it twice after a crash gives the same result, and both
//! functions converge on identical documents.

use gust_sdk::table::Table;
use gust_sdk::{Event, EventError, log};
use serde::{Deserialize, Serialize};
use task_events::{Change, Progress, TaskEvent, progress};

/// What the projection remembers of a task (`task/<id>`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct TaskMemo {
    title: String,
    priority: String,
    assignee: Option<String>,
    seq: u64,
}

/// One task of one user (`user/<name>/<task>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    user: String,
    task: String,
    title: String,
    priority: String,
    /// `open` (assigned to the user) or `completed` (by the user).
    status: String,
    /// When it was completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
}

/// Folds one task event (a topic delivery or a stream record: same data).
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let e = TaskEvent::parse(event.data()).map_err(EventError::fatal)?;
    let users = Table::open("users");
    let memo_key = format!("task/{}", e.task);
    let mut memo: TaskMemo = users.get_json(&memo_key)?.unwrap_or_default();
    match progress(memo.seq, e.seq) {
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
            memo.title.clone_from(title);
            memo.priority.clone_from(priority);
            memo.assignee.clone_from(assignee);
            if let Some(user) = assignee {
                put(&users, user, &e.task, &memo, None)?;
            }
        }
        Change::Assigned { assignee } => {
            if let Some(previous) = memo.assignee.take() {
                users.delete(&format!("user/{previous}/{}", e.task))?;
            }
            memo.assignee = Some(assignee.clone());
            put(&users, assignee, &e.task, &memo, None)?;
        }
        Change::Completed { by, .. } => {
            if let Some(assignee) = &memo.assignee {
                users.delete(&format!("user/{assignee}/{}", e.task))?;
            }
            put(&users, by, &e.task, &memo, Some(e.at.clone()))?;
        }
    }
    memo.seq = e.seq;
    users.put_json(&memo_key, &memo)?;
    log::info!(
        "task {} at seq {} folded into the user model",
        e.task,
        e.seq
    );
    Ok(())
}

/// Writes `user/<user>/<task>`: open, or completed at `completed_at`.
fn put(
    users: &Table,
    user: &str,
    task: &str,
    memo: &TaskMemo,
    completed_at: Option<String>,
) -> Result<(), EventError> {
    let entry = Entry {
        user: user.to_owned(),
        task: task.to_owned(),
        title: memo.title.clone(),
        priority: memo.priority.clone(),
        status: if completed_at.is_some() {
            "completed"
        } else {
            "open"
        }
        .into(),
        completed_at,
    };
    users.put_json(&format!("user/{user}/{task}"), &entry)?;
    Ok(())
}
