//! `[[sse]]`: server-sent-event streams fed by a topic.
//!
//! ```toml
//! [[sse]]
//! route = "/jobs/{id}/events"   # GET opens a text/event-stream
//! topic = "job-events"
//! subject = "{id}"              # optional: only events whose subject is this
//! auth = "anonymous"            # anonymous | function (host key) | admin
//! ```

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::error::ManifestError;
use crate::model::{AuthLevel, Function};
use crate::route::{route_shape, validate_route};

/// One `[[sse]]` entry: `GET route` streams the events of `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRoute {
    /// Route template, e.g. `/jobs/{id}/events` (no catch-all).
    pub route: String,
    /// The topic whose events are streamed.
    pub topic: String,
    /// Subject template (`{param}` filled from the route); only events with
    /// exactly this subject are streamed. `None` streams every event.
    pub subject: Option<String>,
    /// Who may open the stream (`function` means the app's host key).
    pub auth: AuthLevel,
}

impl SseRoute {
    /// The route parameters when `path` matches the route, else `None`.
    /// Parameter values are percent-decoded.
    pub fn match_path(&self, path: &str) -> Option<Vec<(String, String)>> {
        let template: Vec<&str> = self.route.split('/').collect();
        let actual: Vec<&str> = path.split('/').collect();
        if template.len() != actual.len() {
            return None;
        }
        let mut params = Vec::new();
        for (t, a) in template.iter().zip(&actual) {
            match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                Some(name) if !a.is_empty() => {
                    params.push((name.to_string(), percent_decode(a)?));
                }
                Some(_) => return None,
                None if t == a => {}
                None => return None,
            }
        }
        Some(params)
    }

    /// The subject a stream opened with `params` filters on.
    pub fn subject_for(&self, params: &[(String, String)]) -> Option<String> {
        let template = self.subject.as_ref()?;
        let mut out = template.clone();
        for (name, value) in params {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        Some(out)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `[[sse]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSse {
    route: Spanned<String>,
    topic: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
}

/// Builds a located error: `(span, key, message, fix)`.
pub(crate) type ErrorAt<'a> =
    &'a dyn Fn(Option<Range<usize>>, String, String, &str) -> ManifestError;

/// Validates the `[[sse]]` entries against each other and the functions'
/// HTTP routes.
pub(crate) fn parse_sse(
    raw: Vec<Spanned<RawSse>>,
    functions: &[Function],
    err: ErrorAt<'_>,
) -> Result<Vec<SseRoute>, ManifestError> {
    let mut out: Vec<SseRoute> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let span = entry.span();
        let raw = entry.into_inner();
        let key = |k: &str| format!("sse[{index}].{k}");
        let route_span = raw.route.span();
        let route = raw.route.into_inner();
        let params = validate_route(&route).map_err(|e| {
            err(
                Some(route_span.clone()),
                key("route"),
                e.to_string(),
                "write a path like `/jobs/{id}/events` (parameters in braces)",
            )
        })?;
        if route.contains("{*") {
            return Err(err(
                Some(route_span),
                key("route"),
                format!("sse route `{route}` has a catch-all parameter"),
                "name each path segment; `{*rest}` is not supported in [[sse]] routes",
            ));
        }
        let topic = raw.topic.ok_or_else(|| {
            err(
                Some(span.clone()),
                key("topic"),
                format!("sse route `{route}` names no topic"),
                "add `topic = \"job-events\"`",
            )
        })?;
        if !crate::is_resource_name(topic.get_ref()) {
            return Err(err(
                Some(topic.span()),
                key("topic"),
                format!("`{}` is not a valid topic name", topic.get_ref()),
                "use lowercase letters, digits, `-` and `_`, e.g. `job-events`",
            ));
        }
        let subject = match raw.subject {
            None => None,
            Some(s) => {
                let text = s.get_ref();
                let mut rest = text.as_str();
                while let Some(open) = rest.find('{') {
                    let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| {
                        err(
                            Some(s.span()),
                            key("subject"),
                            format!("subject `{text}` has a `{{` without `}}`"),
                            "write e.g. `subject = \"{id}\"` or `subject = \"jobs/{id}\"`",
                        )
                    })?;
                    let name = &rest[open + 1..close];
                    if !params.iter().any(|p| p == name) {
                        return Err(err(
                            Some(s.span()),
                            key("subject"),
                            format!(
                                "subject `{text}` uses `{{{name}}}`, which is not a parameter of route `{route}`"
                            ),
                            &format!("use one of the route's parameters: {}", list(&params)),
                        ));
                    }
                    rest = &rest[close + 1..];
                }
                if text.is_empty() {
                    return Err(err(
                        Some(s.span()),
                        key("subject"),
                        "subject is empty".into(),
                        "leave `subject` out to stream every event, or write e.g. `subject = \"{id}\"`",
                    ));
                }
                Some(s.into_inner())
            }
        };
        let auth = match raw.auth {
            None => AuthLevel::default(),
            Some(a) => match a.get_ref().as_str() {
                "anonymous" => AuthLevel::Anonymous,
                "function" => AuthLevel::Function,
                "admin" => AuthLevel::Admin,
                other => {
                    return Err(err(
                        Some(a.span()),
                        key("auth"),
                        format!("unknown auth level `{other}`"),
                        "use `anonymous`, `function` (the app's host key) or `admin`",
                    ));
                }
            },
        };
        let shape = route_shape(&route);
        if let Some(other) = out.iter().find(|o| route_shape(&o.route) == shape) {
            return Err(err(
                Some(route_span),
                key("route"),
                format!(
                    "sse route `{route}` clashes with sse route `{}`",
                    other.route
                ),
                "give each [[sse]] its own route",
            ));
        }
        for f in functions {
            let Some(http) = f.http() else { continue };
            let gets = http.methods.is_empty() || http.methods.contains(&http::Method::GET);
            if gets && route_shape(&http.route) == shape {
                return Err(err(
                    Some(route_span),
                    key("route"),
                    format!(
                        "sse route `{route}` clashes with route `{}` of function `{}`",
                        http.route, f.name
                    ),
                    "give the stream its own path, e.g. append `/events`",
                ));
            }
        }
        out.push(SseRoute {
            route,
            topic: topic.into_inner(),
            subject,
            auth,
        });
    }
    Ok(out)
}

fn list(params: &[String]) -> String {
    if params.is_empty() {
        "(the route has none)".into()
    } else {
        params
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(route: &str, subject: Option<&str>) -> SseRoute {
        SseRoute {
            route: route.into(),
            topic: "t".into(),
            subject: subject.map(Into::into),
            auth: AuthLevel::Anonymous,
        }
    }

    #[test]
    fn matches_paths_and_fills_subjects() {
        let r = route("/jobs/{id}/events", Some("jobs/{id}"));
        let params = r.match_path("/jobs/a%20b/events").unwrap();
        assert_eq!(params, vec![("id".to_string(), "a b".to_string())]);
        assert_eq!(r.subject_for(&params).as_deref(), Some("jobs/a b"));
        assert!(r.match_path("/jobs//events").is_none());
        assert!(r.match_path("/jobs/1/event").is_none());
        assert!(r.match_path("/jobs/1/events/x").is_none());
        assert!(r.match_path("/jobs/%zz/events").is_none());
        assert_eq!(route("/all", None).subject_for(&[]), None);
    }
}
