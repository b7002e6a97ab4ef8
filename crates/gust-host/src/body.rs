//! The one response body type the host serves, and small response builders.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the host sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec_pretty(value).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error `{ "error": reason, "message": message }`.
pub fn error(status: StatusCode, reason: &str, message: impl std::fmt::Display) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": reason, "message": message.to_string() }),
    )
}

/// A body that holds something (a concurrency permit) until it is finished
/// or dropped.
pub struct Holding<T> {
    inner: Body,
    _held: T,
}

impl<T> Holding<T> {
    /// Wraps `inner`, keeping `held` alive as long as the body.
    pub fn new(inner: Body, held: T) -> Self {
        Self { inner, _held: held }
    }
}

impl<T: Unpin + Send + 'static> hyper::body::Body for Holding<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Read and throw away a body (up to [`DRAIN_LIMIT`] bytes) before
/// answering 413, so that a client still sending a too-large body receives
/// the answer instead of a reset.
pub use gust_runtime::body::{DRAIN_LIMIT, drain};

/// Reads an admin API upload: its content type (default
/// `application/json`) and at most `max` bytes of body; a larger body is a
/// 413 answer naming `what` ("message", "record", ...).
pub async fn read_upload(
    req: http::Request<hyper::body::Incoming>,
    max: usize,
    what: &str,
) -> Result<(String, Bytes), Response<Body>> {
    use http_body_util::BodyExt;
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(c) => Ok((content_type, c.to_bytes())),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("{what}-too-large"),
            format!("a {what} is at most {max} bytes"),
        )),
    }
}
