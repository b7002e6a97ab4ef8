//! The events of the event-sourcing example: what the command functions
//! append to the stream `task-events` and publish to the topic `tasks`, and
//! what every projection folds.
//!
//! An event is a fact about one task, numbered by `seq` (1, 2, 3, ... per
//! task). Projections apply a task's events strictly in `seq` order: an
//! event seen again is skipped, an event that arrives before its
//! predecessor is retried later (see [`Progress`]).

use serde::{Deserialize, Serialize};

/// CloudEvents `type` prefix of task events (`com.example.task.created`, ...).
pub const TYPE_PREFIX: &str = "com.example.task.";

/// One fact about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// The task (`t-` and 16 hex digits); also the stream key.
    pub task: String,
    /// Position in the task's history, from 1.
    pub seq: u64,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub change: Change,
}

/// What happened to the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The task was opened.
    Created {
        /// What is to be done.
        title: String,
        /// `low`, `normal` or `high`.
        priority: String,
        /// Who does it, if decided at once.
        assignee: Option<String>,
    },
    /// The task was given to `assignee` (taken from the previous one).
    Assigned {
        /// The new assignee.
        assignee: String,
    },
    /// The task was done.
    Completed {
        /// Who completed it.
        by: String,
        /// The task's priority, so subscribers can filter without state.
        priority: String,
    },
}

impl TaskEvent {
    /// The CloudEvents `type`: `com.example.task.created|assigned|completed`.
    pub fn event_type(&self) -> String {
        let kind = match self.change {
            Change::Created { .. } => "created",
            Change::Assigned { .. } => "assigned",
            Change::Completed { .. } => "completed",
        };
        format!("{TYPE_PREFIX}{kind}")
    }

    /// Parses an event body; the error names what is wrong.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(data).map_err(|e| format!("not a task event: {e}"))
    }
}

/// Where a projection stands with one task.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The event is the next one: apply it.
    Apply,
    /// Already applied (a redelivery or a replay): skip it.
    Seen,
    /// Event `seq - 1` has not been applied yet: try again later.
    Early {
        /// The seq the projection waits for.
        expected: u64,
    },
}

/// Compares an event's `seq` with the last one a projection applied.
pub fn progress(applied: u64, seq: u64) -> Progress {
    if seq <= applied {
        Progress::Seen
    } else if seq == applied + 1 {
        Progress::Apply
    } else {
        Progress::Early {
            expected: applied + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_flat_json() {
        let e = TaskEvent {
            task: "t-1".into(),
            seq: 2,
            at: "2026-01-01T00:00:00Z".into(),
            change: Change::Assigned {
                assignee: "ada".into(),
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"task":"t-1","seq":2,"at":"2026-01-01T00:00:00Z","kind":"assigned","assignee":"ada"}"#
        );
        assert_eq!(TaskEvent::parse(json.as_bytes()).unwrap(), e);
        assert_eq!(e.event_type(), "com.example.task.assigned");
        assert!(TaskEvent::parse(br#"{"task":"t-1"}"#).is_err());
    }

    #[test]
    fn progress_is_strictly_in_order() {
        assert_eq!(progress(0, 1), Progress::Apply);
        assert_eq!(progress(3, 2), Progress::Seen);
        assert_eq!(progress(3, 3), Progress::Seen);
        assert_eq!(progress(1, 3), Progress::Early { expected: 2 });
    }
}
