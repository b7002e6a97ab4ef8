//! The body type the gateway speaks, small response builders, and the
//! request-body guard that enforces size limits and stall timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every request and response body the gateway passes around.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// A JSON error `{ "error": code, "reason": reason, "request_id": id }`.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    reason: &str,
    request_id: &str,
) -> Response<Body> {
    let text = serde_json::json!({ "error": code, "reason": reason, "request_id": request_id });
    let mut r = Response::new(full(text.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Why a guarded body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFailure {
    /// More than the route's `max_body`.
    TooLarge,
    /// No chunk for `body_timeout`.
    Stalled,
}

impl std::fmt::Display for BodyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyFailure::TooLarge => "request body is larger than allowed",
            BodyFailure::Stalled => "request body stalled",
        })
    }
}

impl std::error::Error for BodyFailure {}

/// Where a guarded body reports why it failed, so the gateway can answer
/// 413/408 even when the failure surfaces as a target error.
pub(crate) type FailureSlot = Arc<OnceLock<BodyFailure>>;

/// Wraps a request body: fails once it exceeds `limit` bytes or stalls for
/// `idle` between chunks.
pub(crate) struct GuardedBody {
    inner: Body,
    limit: u64,
    seen: u64,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A chunk arrived since the timer was armed: re-arm before waiting.
    rearm: bool,
    slot: FailureSlot,
}

impl GuardedBody {
    pub fn new(inner: Body, limit: u64, idle: Duration, slot: FailureSlot) -> Self {
        GuardedBody {
            inner,
            limit,
            seen: 0,
            idle,
            timer: None,
            rearm: false,
            slot,
        }
    }

    fn fail(&mut self, why: BodyFailure) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let _ = self.slot.set(why);
        Poll::Ready(Some(Err(Box::new(why))))
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.rearm = true;
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return this.fail(BodyFailure::TooLarge);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.timer = None;
                Poll::Ready(other)
            }
            Poll::Pending => {
                let idle = this.idle;
                if this.rearm
                    && let Some(t) = this.timer.as_mut()
                {
                    t.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                this.rearm = false;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(BodyFailure::Stalled),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limit_and_stall() {
        let slot = FailureSlot::default();
        let b = GuardedBody::new(full("0123456789"), 5, Duration::from_secs(1), slot.clone());
        assert!(b.collect().await.is_err());
        assert_eq!(slot.get(), Some(&BodyFailure::TooLarge));

        let slot = FailureSlot::default();
        let b = GuardedBody::new(boxed(Stalled), 5, Duration::from_millis(20), slot.clone());
        assert!(b.collect().await.is_err());
        assert_eq!(slot.get(), Some(&BodyFailure::Stalled));
    }

    /// A body that never sends anything.
    struct Stalled;
    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Pending
        }
    }
}
