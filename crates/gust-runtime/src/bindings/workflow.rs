//! `gust:function/workflow`: the steps of a durable workflow, answered by
//! the engine behind [`crate::WorkflowHost`].

use super::generated::gust::function::workflow::{Host, StepResult};
use crate::state::HostState;
use gust_events::workflow::{StepAnswer, StepRequest};

/// Largest input or output a step carries.
const MAX_PAYLOAD: usize = 1 << 20;

impl HostState {
    /// The engine and the run this invocation serves, or why there is none.
    fn workflow_run(&self) -> Result<(std::sync::Arc<dyn crate::WorkflowHost>, String), String> {
        let host =
            self.env.workflow.clone().ok_or_else(|| {
                format!("function `{}` is not part of a workflow app", self.env.name)
            })?;
        let run = self.run.clone().ok_or_else(|| {
            "this invocation is not a workflow run or activity call (trigger = { workflow = {} } or { activity = {} })".to_string()
        })?;
        Ok((host, run))
    }
}

impl Host for HostState {
    async fn step(
        &mut self,
        index: u32,
        kind: String,
        name: String,
        input: String,
    ) -> wasmtime::Result<Result<StepResult, String>> {
        let (host, run) = match self.workflow_run() {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if input.len() > MAX_PAYLOAD {
            return Ok(Err(format!(
                "step {index} input is {} bytes; the limit is {MAX_PAYLOAD}",
                input.len()
            )));
        }
        let request = StepRequest {
            index,
            kind,
            name,
            input,
        };
        Ok(host.step(&run, request).await.map(|answer| match answer {
            StepAnswer::Done(v) => StepResult::Done(v),
            StepAnswer::Failed(e) => StepResult::Failed(e),
            StepAnswer::Pending => StepResult::Pending,
        }))
    }

    async fn set_output(&mut self, output: String) -> wasmtime::Result<Result<(), String>> {
        let (host, run) = match self.workflow_run() {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if output.len() > MAX_PAYLOAD {
            return Ok(Err(format!(
                "output is {} bytes; the limit is {MAX_PAYLOAD}",
                output.len()
            )));
        }
        Ok(host.set_output(&run, output))
    }
}
