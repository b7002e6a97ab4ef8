//! The command side of the event-sourcing example (functions `create-task`,
//! `assign-task` and `complete-task`). A command is checked against the
//! task's current state, then recorded as an event:
//!
//! 1. appended to the stream `task-events` under the task id (the event log,
//!    the source of truth; one key keeps one task's events in order);
//! 2. folded into the command-side state `task-state` (what the next
//!    command is checked against, and the task's next `seq`);
//! 3. published to the topic `tasks` for the subscribers that maintain the
//!    read models.
//!
//! | command                              | body                                   | answer  |
//! |--------------------------------------|----------------------------------------|---------|
//! | `POST /api/tasks`                    | `{"title", "priority"?, "assignee"?}`  | `201`   |
//! | `POST /api/tasks/{id}/assign`        | `{"assignee"}`                         | `200`   |
//! | `POST /api/tasks/{id}/complete`      | `{"by"?}` (default: the assignee)      | `200`   |
//!
//! Every answer is the recorded event (`{"task", "seq", "kind", ...}`).
//! Errors are JSON `{"error": ...}`: `400` for a body that is not the
//! expected JSON, `422` for invalid values, `404` for an unknown task, `409`
//! for a command the task's state forbids (completing it twice, assigning a
//! completed task, completing an unassigned one).

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::json;
use gust_sdk::table::Table;
use serde::{Deserialize, Serialize};
use task_events::{Change, TaskEvent};

/// The command-side state of one task in `task-state`.
#[derive(Debug, Serialize, Deserialize)]
struct TaskState {
    seq: u64,
    priority: String,
    assignee: Option<String>,
    completed: bool,
}

/// Body of `POST /api/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    title: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
}

/// Body of `POST /api/tasks/{id}/assign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignTask {
    assignee: String,
}

/// Body of `POST /api/tasks/{id}/complete`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteTask {
    #[serde(default)]
    by: Option<String>,
}

/// Dispatches on the route: create, assign or complete.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let state = Table::open("state");
    let result = match (req.method(), req.param("id")) {
        ("POST", None) => create(&state, &req),
        ("POST", Some(id)) if req.path().ends_with("/assign") => assign(&state, &req, id),
        ("POST", Some(id)) if req.path().ends_with("/complete") => complete(&state, &req, id),
        _ => Err(error(
            405,
            "use POST /api/tasks, /api/tasks/{id}/assign or /api/tasks/{id}/complete",
        )),
    };
    result.unwrap_or_else(|e| e)
}

/// `POST /api/tasks`: opens a task.
fn create(state: &Table, req: &Request) -> Result<Response, Response> {
    let input: CreateTask = body(req)?;
    let title = input.title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(error(422, "title must be 1 to 200 characters"));
    }
    let priority = input.priority.unwrap_or_else(|| "normal".into());
    if !["low", "normal", "high"].contains(&priority.as_str()) {
        return Err(error(422, "priority must be low, normal or high"));
    }
    let assignee = input.assignee.map(user).transpose()?;
    let task = format!(
        "t-{:016x}",
        gust_sdk::wasi::random::random::get_random_u64()
    );
    let current = TaskState {
        seq: 0,
        priority: priority.clone(),
        assignee: None,
        completed: false,
    };
    let change = Change::Created {
        title,
        priority,
        assignee,
    };
    let event = record(state, &task, current, change)?;
    Ok(Response::json(&event)
        .with_status(201)
        .with_header("location", format!("/api/tasks/{task}")))
}

/// `POST /api/tasks/{id}/assign`: gives an open task to someone.
fn assign(state: &Table, req: &Request, task: &str) -> Result<Response, Response> {
    let current = load(state, task)?;
    let input: AssignTask = body(req)?;
    let assignee = user(input.assignee)?;
    if current.completed {
        return Err(error(409, format!("task `{task}` is already completed")));
    }
    if current.assignee.as_deref() == Some(assignee.as_str()) {
        return Err(error(
            409,
            format!("task `{task}` is already assigned to `{assignee}`"),
        ));
    }
    let event = record(state, task, current, Change::Assigned { assignee })?;
    Ok(Response::json(&event))
}

/// `POST /api/tasks/{id}/complete`: marks an assigned task done.
fn complete(state: &Table, req: &Request, task: &str) -> Result<Response, Response> {
    let current = load(state, task)?;
    let input: CompleteTask = if req.body().iter().all(u8::is_ascii_whitespace) {
        CompleteTask::default()
    } else {
        body(req)?
    };
    if current.completed {
        return Err(error(409, format!("task `{task}` is already completed")));
    }
    let Some(assignee) = current.assignee.clone() else {
        return Err(error(
            409,
            format!("task `{task}` is not assigned to anyone"),
        ));
    };
    let by = input.by.map(user).transpose()?.unwrap_or(assignee);
    let priority = current.priority.clone();
    let event = record(state, task, current, Change::Completed { by, priority })?;
    Ok(Response::json(&event))
}

/// Appends the event to the log, folds it into the command-side state and
/// publishes it; returns it.
fn record(
    state: &Table,
    task: &str,
    mut current: TaskState,
    change: Change,
) -> Result<TaskEvent, Response> {
    let event = TaskEvent {
        task: task.to_owned(),
        seq: current.seq + 1,
        at: now_rfc3339(),
        change,
    };
    // 1. The event log: once this succeeded, the event happened.
    gust_sdk::stream::append_json("log", task, &event).map_err(internal)?;
    // 2. The state the next command is checked against.
    current.seq = event.seq;
    match &event.change {
        Change::Created { assignee, .. } => current.assignee.clone_from(assignee),
        Change::Assigned { assignee } => current.assignee = Some(assignee.clone()),
        Change::Completed { .. } => current.completed = true,
    }
    state.put_json(task, &current).map_err(internal)?;
    // 3. The notification; the subject carries the priority for filters.
    let subject = format!("{}/{task}", current.priority);
    gust_sdk::topic::publish_json("events", &event.event_type(), Some(&subject), &event)
        .map_err(internal)?;
    Ok(event)
}

/// The command-side state of `task`, or `404`.
fn load(state: &Table, task: &str) -> Result<TaskState, Response> {
    let valid = task
        .strip_prefix("t-")
        .is_some_and(|hex| hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    let found = if valid {
        state.get_json(task).map_err(internal)?
    } else {
        None
    };
    found.ok_or_else(|| error(404, format!("no task `{task}`")))
}

/// Parses the JSON body as `T`, or `400`.
fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Response> {
    req.json()
        .map_err(|e| error(400, format!("the body is not the expected JSON: {e}")))
}

/// A user name: 1 to 32 of `a-z 0-9 . _ -`, case-folded; else `422`.
fn user(name: String) -> Result<String, Response> {
    let name = name.trim().to_ascii_lowercase();
    if valid_user(&name) {
        Ok(name)
    } else {
        Err(error(
            422,
            format!("`{name}` is not a user name (1 to 32 of a-z 0-9 . _ -)"),
        ))
    }
}

/// Whether `name` is 1 to 32 of `a-z 0-9 . _ -`.
fn valid_user(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// The current UTC time as RFC 3339 with milliseconds.
fn now_rfc3339() -> String {
    let now = gust_sdk::wasi::clocks::wall_clock::now();
    rfc3339(now.seconds as i64, now.nanoseconds / 1_000_000)
}

/// Seconds since the Unix epoch (plus milliseconds) as RFC 3339 in UTC.
fn rfc3339(secs: i64, millis: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}

/// A storage failure as a `500`.
fn internal(e: impl std::fmt::Display) -> Response {
    error(500, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_user_names() {
        assert_eq!(rfc3339(0, 7), "1970-01-01T00:00:00.007Z");
        assert_eq!(rfc3339(1_709_294_400, 0), "2024-03-01T12:00:00.000Z");
        assert!(valid_user("ada.lovelace"));
        assert!(!valid_user(""));
        assert!(!valid_user("Ada Lovelace"));
    }
}
