//! Outbound HTTP (`wasi:http/outgoing-handler`) as a capability: a function
//! reaches only the destinations its `outbound_http` rules allow, and never
//! past its own timeout.
//!
//! A refused request fails with the wasi-http error `HttpRequestDenied`
//! (before any connection is made) and a warning in the function's log.
//! At most [`MAX_OUTBOUND_IN_FLIGHT`] requests of one function (all its
//! instances together) are open at once; more wait, in the order they were
//! sent, for one to finish, so a guest opening thousands cannot exhaust the
//! host's sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::log::LogLevel;
use crate::state::FunctionEnv;

/// Most outbound requests of one function open at once (from sending the
/// head until the response body is dropped).
pub const MAX_OUTBOUND_IN_FLIGHT: usize = 64;

/// The `wasi:http` hooks of one instance: the allow-list check and the
/// deadline of the running invocation.
pub(crate) struct OutboundHooks {
    env: Arc<FunctionEnv>,
    /// When the current invocation started.
    pub(crate) started: Instant,
    /// The current invocation's span: requests carry it on as `traceparent`.
    pub(crate) trace: Option<gust_events::TraceContext>,
}

impl OutboundHooks {
    pub(crate) fn new(env: Arc<FunctionEnv>) -> Self {
        Self {
            env,
            started: Instant::now(),
            trace: None,
        }
    }

    /// Time left before the invocation's timeout.
    fn remaining(&self) -> Duration {
        self.env
            .limits
            .timeout
            .saturating_sub(self.started.elapsed())
    }
}

/// `scheme://authority/path` of `uri`, without the query (which may hold secrets).
pub(crate) fn describe(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

/// Reads and discards the body of a refused request (at most
/// [`DRAIN_LIMIT`](crate::body::DRAIN_LIMIT) bytes, for at most `within`),
/// so the guest's body writes succeed and it learns of the refusal from
/// the response, as with any other failed request. Dropping the body at
/// once instead makes those writes fail, and StarlingMonkey's `fetch`
/// (JavaScript) then never settles its promise.
fn drain(body: WasiBody, within: Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(within, crate::body::drain(body)).await;
    });
}

/// Caps each of the guest's timeouts at `remaining`.
fn clamp(options: Option<RequestOptions>, remaining: Duration) -> RequestOptions {
    let options = options.unwrap_or_default();
    let cap = |d: Option<Duration>| Some(d.map_or(remaining, |d| d.min(remaining)));
    RequestOptions {
        connect_timeout: cap(options.connect_timeout),
        first_byte_timeout: cap(options.first_byte_timeout),
        between_bytes_timeout: cap(options.between_bytes_timeout),
    }
}

/// Waits for one of the function's outbound permits, queued now: permits
/// go out in the order the guest sent its requests.
///
/// A permit is held until the guest drops the answer. A guest that sends
/// more requests than there are permits and then reads the answers in the
/// order it sent them must get its early requests through first; if the
/// wait only began when the spawned send task first ran, tasks could queue
/// in another order, later requests could hold every permit while the
/// guest waits for an earlier one, and the invocation would hang until its
/// timeout (seen under load: 2 of 6 floods of 300 requests).
fn queue_for_permit(
    permits: &Arc<tokio::sync::Semaphore>,
) -> Pin<
    Box<
        dyn Future<Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send,
    >,
> {
    let mut acquire = Box::pin(permits.clone().acquire_owned());
    // The first poll takes a free permit or joins the semaphore's (fair,
    // first-come) queue; the send task's own polls then wait in that place.
    match acquire
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => Box::pin(std::future::ready(result)),
        Poll::Pending => acquire,
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri().clone();
        if !gust_manifest::outbound_allowed(&self.env.outbound_http, &uri) {
            let allowed = if self.env.outbound_http.is_empty() {
                "the function declares no `outbound_http`".to_string()
            } else {
                let rules: Vec<&str> = self.env.outbound_http.iter().map(|r| r.as_str()).collect();
                format!("`outbound_http` allows only {}", rules.join(", "))
            };
            self.env.log.log(
                &self.env.name,
                LogLevel::Warn,
                &format!(
                    "outbound HTTP denied: {} {}: {allowed}",
                    request.method(),
                    describe(&uri)
                ),
            );
            drain(request.into_body(), self.remaining());
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        if let Some(trace) = &self.trace
            && !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(&trace.to_string())
        {
            request.headers_mut().insert("traceparent", value);
        }
        let remaining = self.remaining();
        if remaining.is_zero() {
            return Box::new(async { Err(Error::HttpResponseTimeout) });
        }
        let options = clamp(options, remaining);
        let permit = queue_for_permit(&self.env.outbound_permits);
        Box::new(async move {
            let deadline = tokio::time::Instant::now() + remaining;
            let permit = tokio::time::timeout_at(deadline, permit)
                .await
                .map_err(|_| Error::HttpResponseTimeout)?
                .map_err(|_| Error::HttpRequestDenied)?;
            let permit = Arc::new(permit);
            let sent = tokio::time::timeout_at(
                deadline,
                wasmtime_wasi_http::default_send_request(request, Some(options)),
            )
            .await
            .map_err(|_| Error::HttpResponseTimeout)?;
            let (response, io) = sent?;
            // The request stays counted while its body or connection lives.
            let body_permit = permit.clone();
            let io = async move {
                let result = io.await;
                drop(permit);
                result
            };
            Ok((
                response.map(|body| {
                    body.map_frame(move |frame| {
                        let _held = &body_permit;
                        frame
                    })
                    .boxed_unsync()
                }),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_timeouts_are_capped_by_the_invocation() {
        let left = Duration::from_secs(2);
        let o = clamp(None, left);
        assert_eq!(o.connect_timeout, Some(left));
        let o = clamp(
            Some(RequestOptions {
                connect_timeout: Some(Duration::from_millis(100)),
                first_byte_timeout: Some(Duration::from_secs(60)),
                between_bytes_timeout: None,
            }),
            left,
        );
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(100)));
        assert_eq!(o.first_byte_timeout, Some(left));
        assert_eq!(o.between_bytes_timeout, Some(left));
    }

    #[tokio::test]
    async fn permits_go_out_in_the_order_requests_were_sent() {
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let held = queue_for_permit(&permits).await.unwrap();
        let first = queue_for_permit(&permits);
        let second = queue_for_permit(&permits);
        // The second request's task runs first; it must still wait its turn.
        let second = tokio::spawn(second);
        tokio::task::yield_now().await;
        drop(held);
        let first = tokio::time::timeout(Duration::from_secs(5), first)
            .await
            .expect("the first request gets the permit")
            .unwrap();
        assert!(!second.is_finished());
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("then the second")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn descriptions_leave_the_query_out() {
        let uri: http::Uri = "https://h.example:8443/a/b?token=secret".parse().unwrap();
        assert_eq!(describe(&uri), "https://h.example:8443/a/b");
    }
}
