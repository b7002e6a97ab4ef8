//! The `notify` function: takes `{"id"}` messages from the queue
//! `callbacks` and POSTs the finished job (status, result or error, links)
//! as JSON to the callback URL given at submit, through outbound HTTP
//! (`gust_sdk::outbound`), which the host allows only to the destinations
//! in this function's `outbound_http`.
//!
//! * a 2xx answer marks the callback `delivered`;
//! * another answer or a network error is retried by the queue (backoff
//!   from gust.toml), the callback shows `retrying` with the last error,
//!   and after the last attempt `failed` (the message is then in
//!   `callbacks-deadletter`);
//! * a destination the host refuses marks it `denied`, not retried.
//!
//! Only the callback is retried: the image work is never redone for it.

use std::time::Duration;

use gust_sdk::outbound::{self, Error};
use gust_sdk::{Event, EventError, log};
use jobs_common::{self as jobs, Job};
use serde::Deserialize;

#[derive(Deserialize)]
struct Message {
    id: String,
}

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let message: Message = event
        .json()
        .map_err(|e| EventError::fatal(format!("not a callback message: {e}")))?;
    if !jobs::valid_id(&message.id) {
        return Err(EventError::fatal(format!(
            "`{}` is not a job id",
            message.id
        )));
    }
    let mut job = jobs::load(&message.id)
        .map_err(EventError::retryable)?
        .ok_or_else(|| EventError::fatal(format!("job {} does not exist", message.id)))?;
    let Some(url) = job.callback.as_ref().map(|c| c.url.clone()) else {
        return Ok(());
    };
    if job
        .callback
        .as_ref()
        .is_some_and(|c| matches!(c.state.as_str(), "delivered" | "denied" | "failed"))
    {
        return Ok(());
    }
    let sent = outbound::Request::post(&url)
        .header("x-gust-job-id", &job.id)
        .timeout(Duration::from_secs(10))
        .json(&jobs::summary(&job))
        .and_then(|r| r.send());
    let attempt = event.attempt().max(1);
    let outcome = match sent {
        Ok(reply) if reply.is_success() => {
            record(&mut job, "delivered", Some(reply.status()), None);
            log::info!(
                "job {}: callback delivered to {url} ({})",
                job.id,
                reply.status()
            );
            Ok(())
        }
        Ok(reply) => {
            let why = format!("the callback answered {}", reply.status());
            retry_or_fail(&mut job, attempt, Some(reply.status()), why)
        }
        Err(Error::Denied(_)) | Err(Error::InvalidUrl(_)) => {
            let why = sent_error(&url, &job);
            record(&mut job, "denied", None, Some(why.clone()));
            log::warn!("job {}: {why}", job.id);
            Err(EventError::fatal(why))
        }
        Err(e) => retry_or_fail(&mut job, attempt, None, e.to_string()),
    };
    jobs::save(&job).map_err(EventError::retryable)?;
    outcome
}

/// The reason shown for a refused destination.
fn sent_error(url: &str, job: &Job) -> String {
    format!(
        "callback to {url} for job {} was refused: the destination is not allowed by `outbound_http`",
        job.id
    )
}

fn record(job: &mut Job, state: &str, status: Option<u16>, error: Option<String>) {
    if let Some(c) = job.callback.as_mut() {
        c.state = state.into();
        c.attempts += 1;
        c.last_status = status;
        c.last_error = error;
    }
}

fn retry_or_fail(
    job: &mut Job,
    attempt: u32,
    status: Option<u16>,
    why: String,
) -> Result<(), EventError> {
    let last = attempt >= jobs::CALLBACK_ATTEMPTS;
    record(
        job,
        if last { "failed" } else { "retrying" },
        status,
        Some(why.clone()),
    );
    log::warn!("job {}: callback attempt {attempt} failed: {why}", job.id);
    Err(EventError::retryable(why))
}
