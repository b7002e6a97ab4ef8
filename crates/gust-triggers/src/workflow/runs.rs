//! The runs in flight on this node: what `gust:function/workflow` answers
//! from while an orchestrator or activity executes. An orchestrator run
//! replays the journal it was started with; steps past its end are new
//! commands, recorded here and written to the journal once the run returns.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use gust_events::workflow::{StepAnswer, StepFuture, StepRequest, WorkflowHost};
use serde_json::Value;

use super::journal::{Step, StepOutcome, now_ms};

/// What an orchestrator run may call, by name.
#[derive(Debug, Clone, Default)]
pub struct Callables {
    /// Activity functions of the app.
    pub activities: Vec<String>,
    /// Workflows (orchestrators) of the app.
    pub workflows: Vec<String>,
}

/// One orchestrator run or activity call.
#[derive(Debug)]
pub enum Run {
    /// An orchestrator replaying `history`.
    Orchestrator(OrchestratorRun),
    /// An activity call; its result once set.
    Activity(Option<Value>),
}

/// An orchestrator run: the journal it replays and what it added.
#[derive(Debug)]
pub struct OrchestratorRun {
    /// The recorded steps at the start of the run.
    pub history: Vec<Step>,
    /// Steps the code took past the end of `history`.
    pub new: Vec<Step>,
    /// The output it set.
    pub output: Option<Value>,
    /// The mismatch between journal and code, if one was found.
    pub mismatch: Option<String>,
    /// What it may call.
    pub callables: Arc<Callables>,
}

/// Every run in flight on this node, by token.
#[derive(Default)]
pub struct Runs {
    runs: Mutex<HashMap<String, Run>>,
}

static RUNS: LazyLock<Arc<Runs>> = LazyLock::new(Arc::default);

/// The runs of this process (shared by every app: tokens are unique).
pub fn runs() -> Arc<Runs> {
    RUNS.clone()
}

/// The host of `gust:function/workflow` for the runtime.
pub fn host() -> Arc<dyn WorkflowHost> {
    runs()
}

impl Runs {
    /// Registers `run` under a new token and returns the token.
    pub fn begin(&self, run: Run) -> String {
        let token = gust_events::new_id();
        self.runs
            .lock()
            .expect("runs lock")
            .insert(token.clone(), run);
        token
    }

    /// Removes and returns the run of `token`.
    pub fn end(&self, token: &str) -> Option<Run> {
        self.runs.lock().expect("runs lock").remove(token)
    }
}

/// Words for a step, for errors: ``activity `charge` with input {"a":1}``.
fn describe(kind: &str, name: &str, input: &Value) -> String {
    let mut text = kind.to_string();
    if !name.is_empty() {
        text.push_str(&format!(" `{name}`"));
    }
    if !input.is_null() {
        let mut shown = input.to_string();
        if shown.len() > 200 {
            shown.truncate(200);
            shown.push_str("...");
        }
        text.push_str(&format!(" with input {shown}"));
    }
    text
}

/// Whether the code's step matches the recorded one (`now` and `random`
/// take no input, so only their kind counts).
fn matches(recorded: &Step, kind: &str, name: &str, input: &Value) -> bool {
    recorded.kind == kind
        && recorded.name == name
        && (matches!(kind, "now" | "random") || recorded.input == *input)
}

impl OrchestratorRun {
    /// Replays or records step `req`.
    fn step(&mut self, req: StepRequest) -> Result<StepAnswer, String> {
        if let Some(m) = &self.mismatch {
            return Err(m.clone());
        }
        let input: Value = if req.input.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&req.input)
                .map_err(|e| format!("step {} input is not JSON: {e}", req.index))?
        };
        let index = req.index as usize;
        let recorded = self.history.len() + self.new.len();
        let existing = if index < self.history.len() {
            Some(&self.history[index])
        } else {
            self.new.get(index - self.history.len())
        };
        if let Some(step) = existing {
            if !matches(step, &req.kind, &req.name, &input) {
                let m = format!(
                    "non-deterministic workflow: step {index} is recorded as {} but the code now asks for {}; the code changed while this instance was running (finish or terminate instances before deploying such a change)",
                    describe(&step.kind, &step.name, &step.input),
                    describe(&req.kind, &req.name, &input),
                );
                self.mismatch = Some(m.clone());
                return Err(m);
            }
            return Ok(match &step.result {
                Some(StepOutcome::Ok(v)) => StepAnswer::Done(v.to_string()),
                Some(StepOutcome::Err(e)) => StepAnswer::Failed(e.clone()),
                None => StepAnswer::Pending,
            });
        }
        if index != recorded {
            return Err(format!(
                "step {index} taken out of order: the next step is {recorded}"
            ));
        }
        let mut step = Step {
            kind: req.kind.clone(),
            name: req.name.clone(),
            input,
            due: None,
            result: None,
            scheduled: false,
        };
        let now = now_ms();
        match req.kind.as_str() {
            "activity" => {
                if !self.callables.activities.contains(&req.name) {
                    step.result = Some(StepOutcome::Err(format!(
                        "no activity `{}` in this app (a function with trigger = {{ activity = {{}} }})",
                        req.name
                    )));
                }
            }
            "child" => {
                if !self.callables.workflows.contains(&req.name) {
                    step.result = Some(StepOutcome::Err(format!(
                        "no workflow `{}` in this app",
                        req.name
                    )));
                }
            }
            "sleep" => {
                let ms = step
                    .input
                    .get("ms")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        format!("step {index}: sleep needs input {{\"ms\": <milliseconds>}}")
                    })?;
                step.due = Some(now.saturating_add(ms));
            }
            "event" => {
                if req.name.is_empty() {
                    return Err(format!(
                        "step {index}: an event wait needs the event's name"
                    ));
                }
                step.due = step
                    .input
                    .get("timeout_ms")
                    .and_then(Value::as_u64)
                    .map(|ms| now.saturating_add(ms));
            }
            "now" => step.result = Some(StepOutcome::Ok(Value::from(now))),
            "random" => {
                let mut b = [0u8; 8];
                let _ = getrandom::fill(&mut b);
                // 53 bits: exact in every JSON reader.
                let n = u64::from_le_bytes(b) >> 11;
                step.result = Some(StepOutcome::Ok(Value::from(n)));
            }
            other => {
                return Err(format!(
                    "step {index}: unknown step kind `{other}` (activity, sleep, event, child, now, random)"
                ));
            }
        }
        let answer = match &step.result {
            Some(StepOutcome::Ok(v)) => StepAnswer::Done(v.to_string()),
            Some(StepOutcome::Err(e)) => StepAnswer::Failed(e.clone()),
            None => StepAnswer::Pending,
        };
        self.new.push(step);
        Ok(answer)
    }
}

impl WorkflowHost for Runs {
    fn step(&self, run: &str, step: StepRequest) -> StepFuture<'_> {
        let answer = match self.runs.lock().expect("runs lock").get_mut(run) {
            Some(Run::Orchestrator(o)) => o.step(step),
            Some(Run::Activity(_)) => {
                Err("activities cannot take workflow steps; only orchestrators can".to_string())
            }
            None => Err("this workflow run has ended".to_string()),
        };
        Box::pin(async move { answer })
    }

    fn set_output(&self, run: &str, output: String) -> Result<(), String> {
        let value: Value =
            serde_json::from_str(&output).map_err(|e| format!("the output is not JSON: {e}"))?;
        match self.runs.lock().expect("runs lock").get_mut(run) {
            Some(Run::Orchestrator(o)) => o.output = Some(value),
            Some(Run::Activity(slot)) => *slot = Some(value),
            None => return Err("this workflow run has ended".to_string()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(index: u32, kind: &str, name: &str, input: &str) -> StepRequest {
        StepRequest {
            index,
            kind: kind.into(),
            name: name.into(),
            input: input.into(),
        }
    }

    fn run(history: Vec<Step>) -> OrchestratorRun {
        OrchestratorRun {
            history,
            new: Vec::new(),
            output: None,
            mismatch: None,
            callables: Arc::new(Callables {
                activities: vec!["reserve".into(), "charge".into()],
                workflows: vec![],
            }),
        }
    }

    #[test]
    fn replays_records_and_names_a_mismatch() {
        let mut r = run(vec![Step {
            kind: "activity".into(),
            name: "reserve".into(),
            input: serde_json::json!({"sku": "a"}),
            due: None,
            result: Some(StepOutcome::Ok(Value::from(7))),
            scheduled: true,
        }]);
        assert_eq!(
            r.step(req(0, "activity", "reserve", r#"{"sku":"a"}"#)),
            Ok(StepAnswer::Done("7".into()))
        );
        assert_eq!(
            r.step(req(1, "activity", "charge", "{}")),
            Ok(StepAnswer::Pending)
        );
        assert_eq!(r.new.len(), 1);
        assert!(matches!(
            r.step(req(2, "activity", "nope", "{}")),
            Ok(StepAnswer::Failed(_))
        ));
        assert!(matches!(
            r.step(req(3, "now", "", "")),
            Ok(StepAnswer::Done(_))
        ));

        let mut changed = run(r.history.clone());
        let err = changed
            .step(req(0, "activity", "charge", r#"{"sku":"a"}"#))
            .unwrap_err();
        assert!(err.contains("step 0"), "{err}");
        assert!(
            err.contains("`reserve`") && err.contains("`charge`"),
            "{err}"
        );
        assert!(changed.step(req(1, "now", "", "")).is_err());
    }
}
