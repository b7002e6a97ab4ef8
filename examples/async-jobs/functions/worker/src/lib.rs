//! The `process-job` function: takes `{"id"}` messages from the queue
//! `jobs`, decodes the uploaded image, measures it (dimensions, colour
//! statistics, luma histogram, dominant colour), makes a thumbnail (Lanczos3
//! resampling, at most 160×160, PNG) and stores it, reporting progress after
//! each stage in the job record and as a topic event. On completion (or
//! failure) it queues the callback, which the `notify` function delivers,
//! so a failing callback endpoint never makes the image work run again.
//!
//! A retried delivery of a job that is already finished does no work again:
//! it only makes sure the callback is queued. An image that cannot be
//! decoded (corrupt, or larger than 10,000 px a side) fails the job with
//! the reason; storage errors are retried.

pub mod analyse;

use gust_sdk::serde_json::json;
use gust_sdk::{Event, EventError, log, queue};
use jobs_common::{self as jobs, Job, Status};
use serde::Deserialize;

#[derive(Deserialize)]
struct Message {
    id: String,
}

#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let message: Message = event
        .json()
        .map_err(|e| EventError::fatal(format!("not a job message: {e}")))?;
    if !jobs::valid_id(&message.id) {
        return Err(EventError::fatal(format!(
            "`{}` is not a job id",
            message.id
        )));
    }
    let mut job = jobs::load(&message.id)
        .map_err(EventError::retryable)?
        .ok_or_else(|| EventError::fatal(format!("job {} does not exist", message.id)))?;
    if !job.status.is_final() {
        process(&mut job)?;
    }
    queue_callback(&job)
}

/// Moves `job` to `stage` at `progress` and tells subscribers.
fn step(job: &mut Job, progress: u8, stage: &str) -> Result<(), EventError> {
    job.status = Status::Processing;
    job.progress = progress;
    job.stage = stage.into();
    jobs::save_and_publish(job).map_err(EventError::retryable)
}

fn process(job: &mut Job) -> Result<(), EventError> {
    let id = job.id.clone();
    step(job, 10, "decoding")?;
    let data = jobs::files()
        .read(&jobs::upload_blob(&id))
        .map_err(|e| EventError::retryable(e.to_string()))?
        .ok_or_else(|| EventError::fatal(format!("the upload of job {id} is missing")))?;
    let image = match analyse::decode(&data) {
        Ok(image) => image,
        Err(why) => return finish_failed(job, why),
    };
    step(job, 40, "analysing")?;
    let mut result = analyse::measure(&image);
    step(job, 70, "thumbnail")?;
    let thumbnail = match analyse::thumbnail(&image.pixels) {
        Ok(t) => t,
        Err(why) => return finish_failed(job, why),
    };
    step(job, 90, "storing")?;
    jobs::files()
        .write(&jobs::thumbnail_blob(&id), &thumbnail.png)
        .map_err(|e| EventError::retryable(e.to_string()))?;
    result.thumbnail_width = thumbnail.width;
    result.thumbnail_height = thumbnail.height;
    result.thumbnail_bytes = thumbnail.png.len();
    job.status = Status::Completed;
    job.progress = 100;
    job.stage = "completed".into();
    job.finished_at_ms = Some(jobs::now_ms());
    log::info!(
        "job {id} completed: {}x{} {} -> thumbnail {}x{} ({} bytes)",
        result.width,
        result.height,
        result.format,
        result.thumbnail_width,
        result.thumbnail_height,
        result.thumbnail_bytes
    );
    job.result = Some(result);
    jobs::save_and_publish(job).map_err(EventError::retryable)
}

fn finish_failed(job: &mut Job, why: String) -> Result<(), EventError> {
    log::warn!("job {} failed: {why}", job.id);
    job.status = Status::Failed;
    job.stage = "failed".into();
    job.error = Some(why);
    job.finished_at_ms = Some(jobs::now_ms());
    jobs::save_and_publish(job).map_err(EventError::retryable)
}

/// Queues the delivery of `job`'s callback unless it has none or it is done.
fn queue_callback(job: &Job) -> Result<(), EventError> {
    let Some(callback) = &job.callback else {
        return Ok(());
    };
    if matches!(callback.state.as_str(), "delivered" | "denied" | "failed") {
        return Ok(());
    }
    queue::send_json(jobs::CALLBACKS, &json!({ "id": job.id }))
        .map(|_| ())
        .map_err(|e| EventError::retryable(e.to_string()))
}
