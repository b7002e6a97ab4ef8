//! Durable workflows: an orchestrator (`trigger = { workflow = {} }`) calls
//! activities (`trigger = { activity = {} }`), sleeps, waits for events and
//! starts child workflows; Gust journals every step and resumes the
//! orchestrator after any crash, on any node.
//!
//! ```no_run
//! use gust_sdk::workflow::{self, Context, Error};
//! use gust_sdk::{Event, EventError};
//! use std::time::Duration;
//!
//! fn order(ctx: &mut Context) -> Result<String, Error> {
//!     let order: serde_json::Value = ctx.input()?;
//!     let reservation: String = ctx.call("reserve", &order)?;
//!     ctx.sleep(Duration::from_secs(60))?;
//!     Ok(reservation)
//! }
//!
//! #[gust_sdk::event]
//! fn handle(event: Event) -> Result<(), EventError> {
//!     workflow::orchestrate(event, order)
//! }
//! ```
//!
//! # How it runs
//! The orchestrator runs again from the top each time a step completes.
//! Each step asks the host, which answers from the journal when the step is
//! recorded (so earlier activities are not called again) and otherwise
//! records it and answers "pending": the step returns
//! [`Error::Suspended`], which `?` carries out of the orchestrator, and the
//! host runs it again once the step has its result. So the code must be
//! deterministic: take time and random numbers from [`Context::now`] and
//! [`Context::random`], not from the system, and do effects only in
//! activities. If the code changes so that step N no longer matches the
//! journal, the instance fails with an error naming step N.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::__wit::gust::function::workflow as wit;
use crate::event::{Event, EventError};

/// Why an orchestrator stopped short of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A step has no result yet: return (`?` does); the orchestrator runs
    /// again once it has.
    Suspended,
    /// A step failed (an activity gave up, a child workflow failed), or the
    /// orchestrator gave up: returned from the orchestrator, it fails the
    /// workflow with this message.
    Failed(String),
    /// The host refused a step (the journal does not match the code): the
    /// workflow is failed by the host.
    Host(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Suspended => f.write_str("suspended until a step completes"),
            Self::Failed(m) | Self::Host(m) => f.write_str(m),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::Failed(message.to_string())
    }
}

/// What a step came to.
enum Answer {
    Done(Value),
    Failed(String),
    Pending,
}

/// The orchestrator's view of its instance and the door to every step.
pub struct Context {
    next: u32,
    id: String,
    input: Vec<u8>,
}

impl Context {
    fn new(event: &Event) -> Self {
        Self {
            next: 0,
            id: event.subject().unwrap_or_default().to_string(),
            input: event.data().to_vec(),
        }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The input the instance was started with.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let data: &[u8] = if self.input.is_empty() {
            b"null"
        } else {
            &self.input
        };
        serde_json::from_slice(data).map_err(|e| Error::Failed(format!("bad workflow input: {e}")))
    }

    fn step(&mut self, kind: &str, name: &str, input: &Value) -> Result<Answer, Error> {
        let index = self.next;
        self.next += 1;
        let input = if input.is_null() {
            String::new()
        } else {
            input.to_string()
        };
        match wit::step(index, kind, name, &input) {
            Ok(wit::StepResult::Done(v)) => Ok(Answer::Done(
                serde_json::from_str(&v).unwrap_or(Value::Null),
            )),
            Ok(wit::StepResult::Failed(e)) => Ok(Answer::Failed(e)),
            Ok(wit::StepResult::Pending) => Ok(Answer::Pending),
            Err(e) => Err(Error::Host(e)),
        }
    }

    fn to_json<I: Serialize>(input: &I) -> Result<Value, Error> {
        serde_json::to_value(input).map_err(|e| Error::Failed(format!("cannot encode input: {e}")))
    }

    fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, Error> {
        serde_json::from_value(v)
            .map_err(|e| Error::Failed(format!("unexpected result of {what}: {e}")))
    }

    /// Calls activity `name` with `input` and returns its result; a failure
    /// (after the activity's retries) is [`Error::Failed`].
    pub fn call<T: DeserializeOwned, I: Serialize>(
        &mut self,
        name: &str,
        input: &I,
    ) -> Result<T, Error> {
        self.try_call(name, input)?.map_err(Error::Failed)
    }

    /// As [`Context::call`], with the activity's failure as a value, for
    /// code that compensates: `Err` only suspends.
    pub fn try_call<T: DeserializeOwned, I: Serialize>(
        &mut self,
        name: &str,
        input: &I,
    ) -> Result<Result<T, String>, Error> {
        let input = Self::to_json(input)?;
        match self.step("activity", name, &input)? {
            Answer::Done(v) => Ok(Ok(Self::decode(name, v)?)),
            Answer::Failed(e) => Ok(Err(e)),
            Answer::Pending => Err(Error::Suspended),
        }
    }

    /// Calls every `(activity, input)` at once (fan-out) and returns their
    /// results in order once all have one (fan-in); the first failure is
    /// [`Error::Failed`].
    pub fn call_all<T: DeserializeOwned, I: Serialize>(
        &mut self,
        calls: &[(&str, I)],
    ) -> Result<Vec<T>, Error> {
        self.try_call_all(calls)?
            .into_iter()
            .map(|r| r.map_err(Error::Failed))
            .collect()
    }

    /// As [`Context::call_all`], with each failure as a value.
    pub fn try_call_all<T: DeserializeOwned, I: Serialize>(
        &mut self,
        calls: &[(&str, I)],
    ) -> Result<Vec<Result<T, String>>, Error> {
        let mut answers = Vec::with_capacity(calls.len());
        for (name, input) in calls {
            let input = Self::to_json(input)?;
            answers.push((*name, self.step("activity", name, &input)?));
        }
        let mut out = Vec::with_capacity(answers.len());
        for (name, answer) in answers {
            match answer {
                Answer::Done(v) => out.push(Ok(Self::decode(name, v)?)),
                Answer::Failed(e) => out.push(Err(e)),
                Answer::Pending => return Err(Error::Suspended),
            }
        }
        Ok(out)
    }

    /// Starts workflow `name` as a child with `input` and returns its output.
    pub fn call_workflow<T: DeserializeOwned, I: Serialize>(
        &mut self,
        name: &str,
        input: &I,
    ) -> Result<T, Error> {
        let input = Self::to_json(input)?;
        match self.step("child", name, &input)? {
            Answer::Done(v) => Self::decode(name, v),
            Answer::Failed(e) => Err(Error::Failed(e)),
            Answer::Pending => Err(Error::Suspended),
        }
    }

    /// Sleeps durably for `duration` (a timer in the journal: no instance
    /// is held, and a restart does not reset it).
    pub fn sleep(&mut self, duration: Duration) -> Result<(), Error> {
        let input = serde_json::json!({ "ms": duration.as_millis() as u64 });
        match self.step("sleep", "", &input)? {
            Answer::Done(_) => Ok(()),
            Answer::Failed(e) => Err(Error::Failed(e)),
            Answer::Pending => Err(Error::Suspended),
        }
    }

    /// Sleeps durably until `unix_ms` (milliseconds since the Unix epoch).
    pub fn sleep_until(&mut self, unix_ms: u64) -> Result<(), Error> {
        let now = self.now()?;
        self.sleep(Duration::from_millis(unix_ms.saturating_sub(now)))
    }

    /// Waits for the event `name` (raised through
    /// `POST /_gust/workflows/{workflow}/{id}/events/{name}`) and returns its
    /// payload; `None` once `timeout` passed without it (`None`: no timeout).
    pub fn wait_for_event<T: DeserializeOwned>(
        &mut self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, Error> {
        let input = match timeout {
            Some(t) => serde_json::json!({ "timeout_ms": t.as_millis() as u64 }),
            None => Value::Null,
        };
        match self.step("event", name, &input)? {
            Answer::Done(v) => Ok(Some(Self::decode(name, v)?)),
            Answer::Failed(_) => Ok(None),
            Answer::Pending => Err(Error::Suspended),
        }
    }

    /// The current time (ms since the Unix epoch), recorded on first run so
    /// that replays see the same value.
    pub fn now(&mut self) -> Result<u64, Error> {
        self.recorded("now")
    }

    /// A random number (53 bits), recorded on first run.
    pub fn random(&mut self) -> Result<u64, Error> {
        self.recorded("random")
    }

    fn recorded(&mut self, kind: &str) -> Result<u64, Error> {
        match self.step(kind, "", &Value::Null)? {
            Answer::Done(v) => v
                .as_u64()
                .ok_or_else(|| Error::Host(format!("{kind} is not a number"))),
            Answer::Failed(e) => Err(Error::Host(e)),
            Answer::Pending => Err(Error::Suspended),
        }
    }
}

/// Whether `event` runs an orchestrator (type `gust.workflow.run`).
pub fn is_run(event: &Event) -> bool {
    event.ty() == "gust.workflow.run"
}

/// The activity `event` calls (type `gust.workflow.activity`), if it is an
/// activity call: one crate can serve several activities.
pub fn activity_name(event: &Event) -> Option<&str> {
    if event.ty() != "gust.workflow.activity" {
        return None;
    }
    event
        .source()
        .rsplit_once("/activity/")
        .map(|(_, name)| name)
}

/// The idempotency key of an activity call (`<workflow>:<id>:<step>`): the
/// same for every attempt, different for every step, so an activity can do
/// its effect once (e.g. `INSERT ... ON CONFLICT DO NOTHING` on it).
pub fn idempotency_key(event: &Event) -> &str {
    event.extension("idempotencykey").unwrap_or(event.id())
}

/// Runs orchestrator `f` for a `gust.workflow.run` event: its output
/// completes the workflow, [`Error::Suspended`] waits for the next step,
/// [`Error::Failed`] fails the workflow.
pub fn orchestrate<O, F>(event: Event, f: F) -> Result<(), EventError>
where
    O: Serialize,
    F: FnOnce(&mut Context) -> Result<O, Error>,
{
    if !is_run(&event) {
        return Err(EventError::fatal(format!(
            "a workflow orchestrator runs on gust.workflow.run events, not {}",
            event.ty()
        )));
    }
    let mut ctx = Context::new(&event);
    match f(&mut ctx) {
        Ok(output) => {
            let json = serde_json::to_string(&output)
                .map_err(|e| EventError::fatal(format!("cannot encode the output: {e}")))?;
            wit::set_output(&json).map_err(EventError::fatal)
        }
        Err(Error::Suspended) => Ok(()),
        Err(Error::Failed(m)) | Err(Error::Host(m)) => Err(EventError::fatal(m)),
    }
}

/// Runs activity `f` for a `gust.workflow.activity` event: its input is
/// the event's JSON, its `Ok` value becomes the step's result; an error is
/// retried (retryable) under the function's retry policy or fails the step.
pub fn activity<I, O, F>(event: Event, f: F) -> Result<(), EventError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(I, &Event) -> Result<O, EventError>,
{
    let data: &[u8] = if event.data().is_empty() {
        b"null"
    } else {
        event.data()
    };
    let input: I = serde_json::from_slice(data)
        .map_err(|e| EventError::fatal(format!("bad activity input: {e}")))?;
    let output = f(input, &event)?;
    let json = serde_json::to_string(&output)
        .map_err(|e| EventError::fatal(format!("cannot encode the result: {e}")))?;
    wit::set_output(&json).map_err(EventError::fatal)
}
