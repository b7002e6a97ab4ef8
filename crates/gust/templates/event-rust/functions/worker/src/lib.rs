//! Handles each message of the queue `jobs`: `{"id": "42", "text": "..."}`.
//!
//! A message that is not such JSON can never succeed, so it goes straight to the
//! dead-letter queue; any other failure (`?`) is retried with the function's policy.

use gust_sdk::{Event, EventError, kv, log};

#[derive(serde::Deserialize)]
struct Job {
    id: String,
    text: String,
}

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let job: Job = event
        .json()
        .map_err(|e| EventError::fatal(format!("not a job: {e}")))?;
    log::info!("job {} (attempt {}): {} words", job.id, event.attempt(), job.text.split_whitespace().count());
    kv::Store::open("done")?.set(&job.id, job.text.to_uppercase())?;
    Ok(())
}
