//! Cross-origin resource sharing per route; preflights answered here.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};

/// A route's compiled CORS rules.
#[derive(Debug)]
pub(crate) struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: HeaderValue,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

fn join(items: &[String]) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&items.join(", "))
        .map_err(|_| format!("`{}` is not a valid header value", items.join(", ")))
}

impl Cors {
    pub fn new(
        origins: &[String],
        methods: &[String],
        headers: &[String],
        expose: &[String],
        credentials: bool,
        max_age: Duration,
    ) -> Result<Self, (&'static str, String, String)> {
        if origins.is_empty() {
            return Err((
                "cors.origins",
                "is empty".into(),
                "list the allowed origins, e.g. origins = [\"https://app.example\"], or [\"*\"]"
                    .into(),
            ));
        }
        let any_origin = origins.iter().any(|o| o == "*");
        if any_origin && credentials {
            return Err((
                "cors.credentials",
                "cannot be true with origins = [\"*\"]".into(),
                "list the exact origins that may send credentials".into(),
            ));
        }
        let methods = if methods.is_empty() {
            ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec()
        } else {
            methods.iter().map(|m| m.to_ascii_uppercase()).collect()
        };
        let bad =
            |key: &'static str| move |e: String| (key, e, "use plain header tokens".to_string());
        Ok(Cors {
            any_origin,
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            methods: join(&methods).map_err(bad("cors.methods"))?,
            headers: (!headers.is_empty())
                .then(|| join(headers))
                .transpose()
                .map_err(bad("cors.headers"))?,
            expose: (!expose.is_empty())
                .then(|| join(expose))
                .transpose()
                .map_err(bad("cors.expose_headers"))?,
            credentials,
            max_age: HeaderValue::from(max_age.as_secs()),
        })
    }

    /// Whether the origin may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    fn allow_origin(&self, origin: &HeaderValue, h: &mut HeaderMap) {
        if self.any_origin {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Answers a preflight: 204 with the allowed methods and headers, or 403.
    pub fn preflight(&self, req: &HeaderMap, request_id: &str) -> Response<Body> {
        let origin = req.get(header::ORIGIN);
        let origin_ok = origin
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| self.allows(o));
        let Some(origin) = origin.filter(|_| origin_ok) else {
            return body::error(
                StatusCode::FORBIDDEN,
                "cors_origin",
                "origin is not allowed",
                request_id,
            );
        };
        let method_ok = req
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                self.methods
                    .to_str()
                    .unwrap_or("")
                    .split(", ")
                    .any(|a| a.eq_ignore_ascii_case(m))
            });
        if !method_ok {
            return body::error(
                StatusCode::FORBIDDEN,
                "cors_method",
                "method is not allowed",
                request_id,
            );
        }
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        self.allow_origin(origin, h);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        match (
            &self.headers,
            req.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
        ) {
            (Some(allowed), _) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
            }
            (None, Some(asked)) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
            (None, None) => {}
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        h.append(
            header::VARY,
            HeaderValue::from_static(
                "Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        resp
    }

    /// Adds CORS headers to a normal response when the origin is allowed.
    pub fn apply(&self, origin: Option<&HeaderValue>, resp: &mut HeaderMap) {
        if let Some(origin) = origin
            && origin.to_str().is_ok_and(|o| self.allows(o))
        {
            self.allow_origin(origin, resp);
            if let Some(e) = &self.expose {
                resp.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
            }
        }
    }
}

/// Whether a request is a CORS preflight.
pub(crate) fn is_preflight(method: &Method, h: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && h.contains_key(header::ORIGIN)
        && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight asks about.
pub(crate) fn requested_method(h: &HeaderMap) -> Option<Method> {
    Method::from_bytes(h.get(header::ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()
}
