//! The seam between `gust:function/workflow` (host side in `gust-runtime`)
//! and the workflow engine (in `gust-triggers`): the runtime passes each step
//! of a run to a [`WorkflowHost`] and knows nothing of journals.

use std::future::Future;
use std::pin::Pin;

/// The CloudEvents extension naming the workflow run (or activity call) an
/// invocation serves; the engine sets it on the events it dispatches.
pub const RUN_EXTENSION: &str = "gustrun";

/// One step an orchestrator takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRequest {
    /// Its position in the run (0, 1, 2, ...).
    pub index: u32,
    /// `activity`, `sleep`, `event`, `child`, `now` or `random`.
    pub kind: String,
    /// The activity, event or child workflow (empty for the others).
    pub name: String,
    /// Its input (JSON).
    pub input: String,
}

/// What a step resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAnswer {
    /// Finished with this result (JSON).
    Done(String),
    /// Failed for this reason.
    Failed(String),
    /// Not finished yet.
    Pending,
}

/// The boxed future of [`WorkflowHost::step`].
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<StepAnswer, String>> + Send + 'a>>;

/// Answers the workflow imports of the invocations that serve run `run`
/// (implemented by the workflow engine).
pub trait WorkflowHost: Send + Sync {
    /// Replays or records `step` of `run`. An error (the journal does not
    /// match the code, an unknown run) is returned to the guest.
    fn step(&self, run: &str, step: StepRequest) -> StepFuture<'_>;

    /// Sets the result of the invocation serving `run`.
    fn set_output(&self, run: &str, output: String) -> Result<(), String>;
}
