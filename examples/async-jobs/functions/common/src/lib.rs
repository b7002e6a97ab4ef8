//! The job record every function of the `async-jobs` example shares.
//!
//! A job lives in the kv store bound as `jobs` under `job:<id>`; the
//! uploaded image and its thumbnail are blobs of the container bound as
//! `files`; each change of state is also published to the topic bound as
//! `events` with the job id as subject, which `[[sse]]` streams to browsers.

use gust_sdk::{blob, kv, topic};
use serde::{Deserialize, Serialize};

/// Binding of the kv store holding job records.
pub const JOBS: &str = "jobs";
/// Binding of the blob container holding uploads and thumbnails.
pub const FILES: &str = "files";
/// Binding of the topic the progress events go to.
pub const EVENTS: &str = "events";
/// Binding of the queue of jobs to process.
pub const WORK: &str = "work";
/// Binding of the queue of callbacks to deliver.
pub const CALLBACKS: &str = "callbacks";
/// Largest accepted upload.
pub const MAX_UPLOAD: usize = 8 << 20;
/// Deliveries of a callback before it is given up (`max_attempts` of the
/// `notify` function in gust.toml).
pub const CALLBACK_ATTEMPTS: u32 = 5;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored and waiting for a worker.
    Queued,
    /// A worker is on it.
    Processing,
    /// Done; `result` holds the outcome.
    Completed,
    /// Could not be done; `error` says why.
    Failed,
}

impl Status {
    /// Whether the job is finished (completed or failed).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed)
    }
}

/// Links a client follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    /// `GET`: the job as JSON.
    pub status_url: String,
    /// `GET`: a text/event-stream of the job's progress.
    pub events_url: String,
    /// `GET`: the thumbnail PNG (once completed).
    pub thumbnail_url: String,
}

/// Delivery of the completion callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// Where the result is POSTed.
    pub url: String,
    /// `pending`, `delivered`, `retrying`, `failed` or `denied`.
    pub state: String,
    /// Deliveries tried.
    pub attempts: u32,
    /// Status of the last answer, if any.
    pub last_status: Option<u16>,
    /// Why the last delivery failed.
    pub last_error: Option<String>,
}

/// What the worker found in the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// `png` or `jpeg`.
    pub format: String,
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// The decoded colour type, e.g. `Rgb8`.
    pub color_type: String,
    /// Whether some pixel is not fully opaque.
    pub has_transparency: bool,
    /// Mean red, green and blue (0-255).
    pub mean_rgb: [f64; 3],
    /// Mean luma (Rec. 601, 0-255).
    pub mean_luma: f64,
    /// Share of pixels in 8 luma bands (dark to light), summing to 1.
    pub luma_histogram: [f64; 8],
    /// The colour closest to most pixels, as `#rrggbb` (mean of the most
    /// populated 4-bit-per-channel box).
    pub dominant_color: String,
    /// Thumbnail width.
    pub thumbnail_width: u32,
    /// Thumbnail height.
    pub thumbnail_height: u32,
    /// Thumbnail PNG size in bytes.
    pub thumbnail_bytes: usize,
}

/// A job, as stored and as `GET jobs/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// 16 hex digits.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// 0 to 100.
    pub progress: u8,
    /// What the worker does now (`queued`, `decoding`, ...).
    pub stage: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    /// When it finished, if it did.
    pub finished_at_ms: Option<u64>,
    /// The upload's content type (`image/png` or `image/jpeg`).
    pub content_type: String,
    /// The upload's size.
    pub size: usize,
    /// Links to follow.
    pub links: Links,
    /// The completion callback, when one was given.
    pub callback: Option<Callback>,
    /// The outcome, once completed.
    pub result: Option<Analysis>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The kv key of job `id`.
pub fn job_key(id: &str) -> String {
    format!("job:{id}")
}

/// The blob holding job `id`'s upload.
pub fn upload_blob(id: &str) -> String {
    format!("upload-{id}")
}

/// The blob holding job `id`'s thumbnail.
pub fn thumbnail_blob(id: &str) -> String {
    format!("thumbnail-{id}.png")
}

/// Whether `id` looks like a job id (so it can be used in keys and names).
pub fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Milliseconds since the Unix epoch, from the host's wall clock.
pub fn now_ms() -> u64 {
    let now = gust_sdk::wasi::clocks::wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
}

/// Reads job `id`.
pub fn load(id: &str) -> Result<Option<Job>, String> {
    let store = kv::Store::open(JOBS).map_err(|e| e.to_string())?;
    store
        .get_json(&job_key(id))
        .map_err(|e| format!("cannot read job {id}: {e}"))
}

/// Writes `job`.
pub fn save(job: &Job) -> Result<(), String> {
    let store = kv::Store::open(JOBS).map_err(|e| e.to_string())?;
    store
        .set_json(&job_key(&job.id), job)
        .map_err(|e| format!("cannot write job {}: {e}", job.id))
}

/// The event a change of `job` is published as: `job.<status>` (or
/// `job.progress` while processing), subject = job id, data = the job.
pub fn publish(job: &Job) -> Result<(), String> {
    let ty = match job.status {
        Status::Queued => "job.queued",
        Status::Processing => "job.progress",
        Status::Completed => "job.completed",
        Status::Failed => "job.failed",
    };
    topic::publish_json(EVENTS, ty, Some(&job.id), &summary(job))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Saves `job`, then tells subscribers.
pub fn save_and_publish(job: &Job) -> Result<(), String> {
    save(job)?;
    publish(job)
}

/// What progress events and callbacks carry: the job without its callback
/// details.
pub fn summary(job: &Job) -> gust_sdk::serde_json::Value {
    gust_sdk::serde_json::json!({
        "id": job.id,
        "status": job.status,
        "progress": job.progress,
        "stage": job.stage,
        "result": job.result,
        "error": job.error,
        "status_url": job.links.status_url,
        "thumbnail_url": job.links.thumbnail_url,
    })
}

/// The container holding uploads and thumbnails.
pub fn files() -> blob::Container {
    blob::Container::open(FILES)
}
