//! The HTTP side of the `async-jobs` example, one crate for four functions:
//!
//! | function        | route                      | answer                                   |
//! |-----------------|----------------------------|------------------------------------------|
//! | `submit-job`    | `POST /jobs`               | `202` + `Location` + `{id, status_url, events_url, thumbnail_url}` |
//! | `job-status`    | `GET /jobs/{id}`           | the job: status, progress, result, callback |
//! | `job-thumbnail` | `GET /jobs/{id}/thumbnail` | the thumbnail PNG once completed         |
//! | `job-page`      | `GET /`                    | a page to upload an image and watch it   |
//!
//! `POST /jobs` takes the image (PNG or JPEG, at most 8 MiB) as the body and
//! an optional callback URL in the query (`?callback=<url>`) or the header
//! `x-callback-url`. Anything else is refused before a job exists: `400`
//! for an empty body or a bad callback URL, `415` for what is not a PNG or
//! JPEG, `413` for too large.

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::json;
use gust_sdk::{log, queue};
use jobs_common::{self as jobs, Callback, Job, Links, Status};

#[gust_sdk::http]
fn handle(req: Request) -> Response {
    match req.function_name() {
        Some("submit-job") => submit(&req),
        Some("job-status") => status(&req),
        Some("job-thumbnail") => thumbnail(&req),
        Some("job-page") => page(),
        other => Response::internal_error(format!("unexpected function {other:?}")),
    }
}

fn error(status: u16, reason: &str, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": reason, "message": message.into() })).with_status(status)
}

/// The image type of `data` from its signature.
fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else {
        None
    }
}

/// `http://host[/prefix]` as the client sees this app (behind `gust up
/// examples` the front adds `x-forwarded-*`).
fn base_url(req: &Request) -> String {
    let proto = req.header("x-forwarded-proto").unwrap_or("http");
    let host = req
        .header("x-forwarded-host")
        .or_else(|| req.header("host"))
        .unwrap_or("localhost");
    let prefix = req
        .header("x-forwarded-prefix")
        .unwrap_or("")
        .trim_end_matches('/');
    format!("{proto}://{host}{prefix}")
}

fn new_id() -> String {
    gust_sdk::wasi::random::random::get_random_bytes(8)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn callback_url(req: &Request) -> Result<Option<String>, Response> {
    let url = req
        .query("callback")
        .or_else(|| req.header("x-callback-url"))
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let Some(url) = url else { return Ok(None) };
    let lower = url.to_ascii_lowercase();
    let has_host = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || !has_host {
        return Err(error(
            400,
            "bad-callback",
            format!("callback `{url}` is not an http:// or https:// URL"),
        ));
    }
    if url.len() > 2048 {
        return Err(error(
            400,
            "bad-callback",
            "callback URL longer than 2048 bytes",
        ));
    }
    Ok(Some(url.to_string()))
}

fn submit(req: &Request) -> Response {
    let body = req.body();
    if body.is_empty() {
        return error(
            400,
            "empty",
            "send the image (PNG or JPEG) as the request body",
        );
    }
    if body.len() > jobs::MAX_UPLOAD {
        return error(
            413,
            "too-large",
            format!("images are at most {} bytes", jobs::MAX_UPLOAD),
        );
    }
    let Some(content_type) = sniff(body) else {
        return error(
            415,
            "unsupported-media-type",
            "only PNG and JPEG images are accepted (the body does not start with their signature)",
        );
    };
    let callback = match callback_url(req) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let id = new_id();
    let base = base_url(req);
    let links = Links {
        status_url: format!("{base}/jobs/{id}"),
        events_url: format!("{base}/jobs/{id}/events"),
        thumbnail_url: format!("{base}/jobs/{id}/thumbnail"),
    };
    let job = Job {
        id: id.clone(),
        status: Status::Queued,
        progress: 0,
        stage: "queued".into(),
        submitted_at_ms: jobs::now_ms(),
        finished_at_ms: None,
        content_type: content_type.into(),
        size: body.len(),
        links: links.clone(),
        callback: callback.map(|url| Callback {
            url,
            state: "pending".into(),
            attempts: 0,
            last_status: None,
            last_error: None,
        }),
        result: None,
        error: None,
    };
    let stored = jobs::files()
        .write(&jobs::upload_blob(&id), body)
        .map_err(|e| e.to_string())
        .and_then(|()| jobs::save(&job));
    if let Err(e) = stored {
        log::error!("job {id} not accepted: {e}");
        return error(
            503,
            "unavailable",
            format!("the job was not accepted, retry: {e}"),
        );
    }
    // Published before the job is queued, so `job.queued` comes first.
    if let Err(e) = jobs::publish(&job) {
        log::warn!("job {id}: queued event not published: {e}");
    }
    if let Err(e) = queue::send_json(jobs::WORK, &json!({ "id": id })) {
        log::error!("job {id} not queued: {e}");
        let mut failed = job.clone();
        failed.status = Status::Failed;
        failed.stage = "failed".into();
        failed.error = Some(format!("not queued: {e}"));
        let _ = jobs::save_and_publish(&failed);
        return error(
            503,
            "unavailable",
            format!("the job was not queued, retry: {e}"),
        );
    }
    log::info!("job {id} queued ({content_type}, {} bytes)", body.len());
    Response::json(&json!({
        "id": id,
        "status": "queued",
        "status_url": links.status_url,
        "events_url": links.events_url,
        "thumbnail_url": links.thumbnail_url,
    }))
    .with_status(202)
    .with_header("location", links.status_url)
}

fn job_of(req: &Request) -> Result<Job, Response> {
    let id = req.param("id").unwrap_or("");
    if !jobs::valid_id(id) {
        return Err(error(404, "not-found", format!("no job `{id}`")));
    }
    match jobs::load(id) {
        Ok(Some(job)) => Ok(job),
        Ok(None) => Err(error(404, "not-found", format!("no job `{id}`"))),
        Err(e) => Err(error(503, "unavailable", e)),
    }
}

fn status(req: &Request) -> Response {
    match job_of(req) {
        Ok(job) => {
            let retry = if job.status.is_final() {
                None
            } else {
                Some("1")
            };
            let r = Response::json(&job).with_header("cache-control", "no-store");
            match retry {
                Some(seconds) => r.with_header("retry-after", seconds),
                None => r,
            }
        }
        Err(response) => response,
    }
}

fn thumbnail(req: &Request) -> Response {
    let job = match job_of(req) {
        Ok(job) => job,
        Err(response) => return response,
    };
    match job.status {
        Status::Completed => {}
        Status::Failed => {
            return error(
                410,
                "failed",
                format!("job failed: {}", job.error.unwrap_or_default()),
            );
        }
        _ => {
            return error(409, "not-ready", "the job is not completed yet")
                .with_header("retry-after", "1");
        }
    }
    match jobs::files().read(&jobs::thumbnail_blob(&job.id)) {
        Ok(Some(png)) => Response::status(200)
            .with_header("content-type", "image/png")
            .with_header("cache-control", "max-age=3600")
            .with_body(png),
        Ok(None) => error(404, "not-found", "the thumbnail is missing"),
        Err(e) => error(503, "unavailable", e.to_string()),
    }
}

fn page() -> Response {
    Response::status(200)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_body(PAGE)
}

/// Upload form + live progress. Every URL is relative, so the page works
/// under a prefix (`gust up examples` serves it at `/async-jobs/`).
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>async jobs</title>
<style>
body{font:15px system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
progress{width:100%;height:1.2rem} pre{background:#f4f4f4;padding:.6rem;overflow:auto;font-size:13px}
#log li{font-family:monospace;font-size:13px} img{border:1px solid #ccc;margin-top:.5rem}
</style></head><body>
<h1>Thumbnail and image statistics, in the background</h1>
<p>Pick a PNG or JPEG image. <code>POST jobs</code> answers <code>202</code> at once; a queue-triggered
worker decodes it, measures it and makes a thumbnail, and this page follows the job through
the server-sent-event stream <code>jobs/{id}/events</code>.</p>
<form id="f"><input type="file" id="file" accept="image/png,image/jpeg" required>
<button>Submit</button></form>
<p id="state"></p><progress id="bar" max="100" value="0" hidden></progress>
<ul id="log"></ul><img id="thumb" hidden alt="thumbnail"><pre id="result" hidden></pre>
<script>
const $ = (id) => document.getElementById(id);
$("f").onsubmit = async (e) => {
  e.preventDefault();
  const file = $("file").files[0]; if (!file) return;
  $("log").innerHTML = ""; $("thumb").hidden = true; $("result").hidden = true;
  const r = await fetch("jobs", { method: "POST", body: file });
  const body = await r.json();
  if (r.status !== 202) { $("state").textContent = r.status + ": " + body.message; return; }
  $("state").textContent = "job " + body.id + " queued";
  $("bar").hidden = false; $("bar").value = 0;
  const events = new EventSource("jobs/" + body.id + "/events");
  const show = (ev) => {
    const job = JSON.parse(ev.data);
    $("bar").value = job.progress;
    $("state").textContent = "job " + job.id + ": " + job.status + " (" + job.stage + ")";
    const li = document.createElement("li");
    li.textContent = ev.type + " " + job.progress + "% " + job.stage; $("log").appendChild(li);
    if (job.status === "completed" || job.status === "failed") {
      events.close();
      fetch("jobs/" + job.id).then((r) => r.json()).then((j) => {
        $("result").textContent = JSON.stringify(j.result || j.error, null, 2); $("result").hidden = false;
      });
      if (job.status === "completed") { $("thumb").src = "jobs/" + job.id + "/thumbnail"; $("thumb").hidden = false; }
    }
  };
  for (const t of ["job.queued", "job.progress", "job.completed", "job.failed"]) events.addEventListener(t, show);
};
</script></body></html>
"#;
