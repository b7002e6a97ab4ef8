//! The HTTP trigger path: route, authorise, limit, invoke.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::app::{FunctionStats, LoadedApp, LoadedFunction};
use crate::body::{self, Body, Holding};
use crate::invocations::Invocation;
use gust_triggers::http::{AuthFailure, RouteMatch, authorize, presented_key};

/// Handles a request addressed to the app's functions.
pub async fn handle(app: Arc<LoadedApp>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let (entry, params) = match app.router.route(req.method(), &path) {
        RouteMatch::Found { entry, params } => (entry.clone(), params),
        RouteMatch::NotFound => {
            // No function route: a `[[static]]` mount may have the file.
            if let Some(r) = app
                .statics
                .serve(req.method(), req.uri(), req.headers())
                .await
            {
                return r;
            }
            return body::error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no route matches {path}"),
            );
        }
        RouteMatch::MethodNotAllowed { allowed } => {
            let list = allowed
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let mut r = body::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("{} is not allowed on {path}; allowed: {list}", req.method()),
            );
            if let Ok(v) = HeaderValue::from_str(&list) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            return r;
        }
    };
    let key = presented_key(req.headers(), req.uri().query());
    if let Err(failure) = authorize(
        entry.auth,
        &entry.function,
        key.as_deref(),
        &app.keys.current(),
    ) {
        let status = match failure {
            AuthFailure::Missing => StatusCode::UNAUTHORIZED,
            AuthFailure::Denied => StatusCode::FORBIDDEN,
        };
        return body::error(status, "unauthorized", failure);
    }
    invoke(&app, &entry.function, &entry.route, &params, req).await
}

/// Runs `function` on `req` (already routed and authorised), enforcing its
/// concurrency and body limits.
pub async fn invoke<B>(
    app: &LoadedApp,
    function: &str,
    route: &str,
    params: &[(String, String)],
    req: Request<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<body::BoxError>,
{
    let Some(f) = app.functions.get(function) else {
        return body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "inactive",
            format!("function `{function}` is not active"),
        );
    };
    invoke_function(f, function, route, params, req).await
}

/// Runs the loaded HTTP function `f` (named `function`) on `req`, enforcing
/// its concurrency and body limits.
pub async fn invoke_function<B>(
    f: &LoadedFunction,
    function: &str,
    route: &str,
    params: &[(String, String)],
    req: Request<B>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<body::BoxError>,
{
    let Ok(permit) = f.permits.clone().try_acquire_owned() else {
        FunctionStats::bump(&f.stats.rejected);
        let mut r = body::error(
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency-limit",
            format!(
                "function `{function}` is already running {} invocations; retry shortly",
                f.http.env().limits.concurrency
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };

    let max_body = f.http.env().limits.max_body;
    let too_large = || {
        body::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("request body is larger than the function's limit of {max_body} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        if declared.is_some_and(|n| n <= body::DRAIN_LIMIT) {
            body::drain(req.into_body()).await;
        }
        return too_large();
    }
    let (mut parts, incoming) = req.into_parts();
    let bytes = match Limited::new(incoming, max_body as usize).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large();
        }
        Err(e) => {
            return body::error(
                StatusCode::BAD_REQUEST,
                "bad-body",
                format!("cannot read the request body: {e}"),
            );
        }
    };

    let ids = gust_runtime::InvocationIds::new(
        parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    let request_line = format!("{} {}", parts.method, parts.uri.path());
    parts.headers.remove("x-gust-key");
    set_header(&mut parts.headers, "x-gust-function", function);
    set_header(&mut parts.headers, "x-gust-route", route);
    set_header(&mut parts.headers, "x-gust-params", &encode_params(params));
    let request = Request::from_parts(parts, Full::new(bytes));

    FunctionStats::bump(&f.stats.invocations);
    let in_flight = f.metrics.start();
    let (started, began) = (SystemTime::now(), Instant::now());
    let result = f.http.handle_as(request, ids.clone()).await;
    drop(in_flight);
    let mut record = Invocation::new(&ids, function, "http", started, began.elapsed());
    record.request = Some(request_line);
    match &result {
        Ok(response) => {
            record.status = Some(response.status().as_u16());
            if response.status().is_server_error() {
                record.outcome = "error";
            }
        }
        Err(e) => {
            record.status = Some(e.status().as_u16());
            record.outcome = "error";
            record.error = Some(e.to_string());
        }
    }
    f.recent.push(record);
    match result {
        Ok(response) => {
            let (parts, guest_body) = response.into_parts();
            let guest_body = guest_body
                .map_err(|e| Box::new(e) as body::BoxError)
                .boxed_unsync();
            Response::from_parts(parts, Holding::new(guest_body, permit).boxed_unsync())
        }
        Err(e) => {
            FunctionStats::bump(&f.stats.failures);
            f.metrics
                .failed(matches!(e, gust_runtime::InvokeError::Timeout(_)));
            body::error(e.status(), e.reason(), format!("function `{function}` {e}"))
        }
    }
}

fn set_header(headers: &mut http::HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// `a=1&b=x%20y`: route parameters as form-urlencoded text.
pub fn encode_params(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_form_encoded() {
        let p = vec![
            ("id".to_string(), "a b/c".to_string()),
            ("k".to_string(), "é".to_string()),
        ];
        assert_eq!(encode_params(&p), "id=a%20b%2Fc&k=%C3%A9");
        assert_eq!(encode_params(&[]), "");
    }
}
