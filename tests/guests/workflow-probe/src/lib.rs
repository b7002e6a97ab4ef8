//! Workflows and activities for `crates/gust/tests/workflows.rs`, one crate
//! serving every function (it dispatches on the workflow or activity name):
//!
//! * workflow `chain`: `double` three times in a row on the input number.
//! * workflow `fanout`: `double` on every number of the input list at once,
//!   then the sum.
//! * workflow `approval`: waits for the event `go` (timeout `timeout_ms` of
//!   the input) and returns its payload, or `"timed out"`.
//! * workflow `changing`: calls the activity named by the variable `first`,
//!   then waits for `go`; changing the variable mid-flight is a code change
//!   the journal no longer matches.
//! * workflow `parent`: runs `chain` as a child and adds one.
//! * workflow `failing`: calls `fail`, compensates with `double`, then fails.
//! * workflow `sleeper`: sleeps the input's milliseconds durably, calls
//!   `double`, and returns how long it slept (by its recorded clock).
//! * activities `double` (n -> 2n) and `fail`.
//! * queue functions (any `gust.queue.message`): double the number in the
//!   message and send it to the binding `next` (the plain queue chain that
//!   `bench/workflows.sh` compares workflows with).

use std::time::Duration;

use gust_sdk::serde_json::{Value, json};
use gust_sdk::workflow::{self, Context, Error};
use gust_sdk::{Event, EventError, variables};

fn chain(ctx: &mut Context) -> Result<Value, Error> {
    let mut n: i64 = ctx.input()?;
    for _ in 0..3 {
        n = ctx.call("double", &n)?;
    }
    Ok(json!(n))
}

fn fanout(ctx: &mut Context) -> Result<Value, Error> {
    let numbers: Vec<i64> = ctx.input()?;
    let calls: Vec<(&str, i64)> = numbers.iter().map(|n| ("double", *n)).collect();
    let doubled: Vec<i64> = ctx.call_all(&calls)?;
    Ok(json!({ "doubled": doubled, "sum": doubled.iter().sum::<i64>() }))
}

fn approval(ctx: &mut Context) -> Result<Value, Error> {
    let input: Value = ctx.input()?;
    let timeout = input["timeout_ms"].as_u64().map(Duration::from_millis);
    match ctx.wait_for_event::<Value>("go", timeout)? {
        Some(payload) => Ok(json!({ "approved": payload })),
        None => Ok(json!("timed out")),
    }
}

fn changing(ctx: &mut Context) -> Result<Value, Error> {
    let first = variables::get("first")
        .ok()
        .flatten()
        .unwrap_or_else(|| "double".into());
    let n: i64 = ctx.call(&first, &1)?;
    ctx.wait_for_event::<Value>("go", None)?;
    Ok(json!(n))
}

fn parent(ctx: &mut Context) -> Result<Value, Error> {
    let n: i64 = ctx.input()?;
    let child: i64 = ctx.call_workflow("chain", &n)?;
    Ok(json!(child + 1))
}

fn failing(ctx: &mut Context) -> Result<Value, Error> {
    match ctx.try_call::<Value, _>("fail", &json!({}))? {
        Ok(_) => Ok(json!("unexpected")),
        Err(e) => {
            let _: i64 = ctx.call("double", &100)?;
            Err(Error::Failed(format!("compensated after: {e}")))
        }
    }
}

fn sleeper(ctx: &mut Context) -> Result<Value, Error> {
    let ms: u64 = ctx.input()?;
    let before = ctx.now()?;
    ctx.sleep(Duration::from_millis(ms))?;
    let n: i64 = ctx.call("double", &21)?;
    let after = ctx.now()?;
    Ok(json!({ "slept_ms": after - before, "n": n }))
}

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    if event.ty() == "gust.queue.message" {
        let n: i64 = event
            .json()
            .map_err(|e| EventError::fatal(format!("not a number: {e}")))?;
        gust_sdk::queue::send_json("next", &(n * 2))
            .map_err(|e| EventError::retryable(e.to_string()))?;
        return Ok(());
    }
    if let Some(name) = workflow::activity_name(&event) {
        return match name {
            "double" => workflow::activity(event, |n: i64, _: &Event| Ok(n * 2)),
            "fail" => Err(EventError::fatal("this activity always fails")),
            other => Err(EventError::fatal(format!("no activity {other}"))),
        };
    }
    let name = event
        .source()
        .strip_prefix("/gust/workflow/")
        .unwrap_or_default()
        .to_string();
    match name.as_str() {
        "chain" => workflow::orchestrate(event, chain),
        "fanout" => workflow::orchestrate(event, fanout),
        "approval" => workflow::orchestrate(event, approval),
        "changing" => workflow::orchestrate(event, changing),
        "parent" => workflow::orchestrate(event, parent),
        "failing" => workflow::orchestrate(event, failing),
        "sleeper" => workflow::orchestrate(event, sleeper),
        other => Err(EventError::fatal(format!("no workflow {other}"))),
    }
}
