//! Outbound HTTP calls (`wasi:http/outgoing-handler`) to the destinations
//! the function declares in `gust.toml`:
//!
//! ```toml
//! outbound_http = ["https://hooks.example.com", "http://127.0.0.1:*"]
//! ```
//!
//! ```no_run
//! use gust_sdk::outbound;
//!
//! let reply = outbound::post_json("https://hooks.example.com/done", &serde_json::json!({ "id": 7 }))?;
//! if !reply.is_success() {
//!     gust_sdk::log::warn!("hook answered {}", reply.status());
//! }
//! # Ok::<(), outbound::Error>(())
//! ```
//!
//! A destination that no rule allows fails with [`Error::Denied`] without
//! any connection being made. Calls never outlive the function's timeout.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest response body read (bigger ones fail with [`Error::Body`]).
pub const MAX_RESPONSE: usize = 16 << 20;

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The URL is not `http(s)://host[:port][/path]`.
    InvalidUrl(String),
    /// The host refused the destination: no `outbound_http` rule allows it.
    Denied(String),
    /// No answer in time (the call's own timeout, or the function's).
    Timeout(String),
    /// The connection or the exchange failed (`wasi:http` error code).
    Http(String),
    /// The request or response body could not be sent or read.
    Body(String),
}

impl Error {
    /// Whether trying again later may help (timeouts and connection
    /// failures), as opposed to a denied or malformed request.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::Http(_) | Error::Body(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Error::Denied(url) => write!(
                f,
                "outbound HTTP to {url} was denied: add a matching rule to the function's `outbound_http` in gust.toml"
            ),
            Error::Timeout(what) => write!(f, "outbound HTTP timed out: {what}"),
            Error::Http(what) => write!(f, "outbound HTTP failed: {what}"),
            Error::Body(what) => write!(f, "outbound HTTP body: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// An outbound request, built then [sent](Request::send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` (e.g. `"PUT"`) to `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Body(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Gives up after `timeout` to connect, for the first response byte and
    /// between body chunks (the function's own timeout applies anyway).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let url = Url::parse(&self.url)?;
        imp::send(self, url)
    }
}

/// A response, fully read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Body(format!("not JSON: {e}")))
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::get(url).send()
}

/// `POST url` with `value` as JSON.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, Error> {
    Request::post(url).json(value)?.send()
}

/// The parts of an absolute `http(s)` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    authority: String,
    path_with_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidUrl(format!("`{url}`: {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("no scheme (write http://... or https://...)"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(bad("only http and https are supported")),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("missing or malformed host"));
        }
        let path_with_query = match &rest[end..] {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Self {
            https,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Error, MAX_RESPONSE, Request, Response, Url};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions,
        Scheme,
    };
    use wasip2::io::streams::StreamError;

    /// Size of the pieces in which a request body is written.
    const WRITE_CHUNK: usize = 4096;

    fn method(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            other => Method::Other(other.to_string()),
        }
    }

    fn classify(code: ErrorCode, url: &str) -> Error {
        match code {
            ErrorCode::HttpRequestDenied => Error::Denied(url.to_string()),
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => Error::Timeout(format!("{url}: {code:?}")),
            ErrorCode::HttpRequestUriInvalid => Error::InvalidUrl(url.to_string()),
            other => Error::Http(format!("{url}: {other:?}")),
        }
    }

    pub(super) fn send(request: Request, url: Url) -> Result<Response, Error> {
        let shown = request.url.split('?').next().unwrap_or("").to_string();
        let headers = Fields::new();
        for (name, value) in &request.headers {
            headers
                .append(name, value)
                .map_err(|e| Error::Http(format!("header {name}: {e:?}")))?;
        }
        if !request.body.is_empty() || matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") {
            let _ = headers.set(
                "content-length",
                &[request.body.len().to_string().into_bytes()],
            );
        }
        let outgoing = OutgoingRequest::new(headers);
        let scheme = if url.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let invalid = |what: &str| Error::InvalidUrl(format!("{shown}: {what}"));
        outgoing
            .set_method(&method(&request.method))
            .map_err(|()| invalid("method"))?;
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        outgoing
            .set_authority(Some(&url.authority))
            .map_err(|()| invalid("host"))?;
        outgoing
            .set_path_with_query(Some(&url.path_with_query))
            .map_err(|()| invalid("path"))?;
        let body = outgoing
            .body()
            .map_err(|()| Error::Body("request body taken twice".into()))?;
        let options = request.timeout.map(|t| {
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            let o = RequestOptions::new();
            let _ = o.set_connect_timeout(Some(nanos));
            let _ = o.set_first_byte_timeout(Some(nanos));
            let _ = o.set_between_bytes_timeout(Some(nanos));
            o
        });
        let pending =
            outgoing_handler::handle(outgoing, options).map_err(|c| classify(c, &shown))?;
        // Write the body; a refused request shows up as a write error, so
        // the response's error (below) takes precedence.
        let written = write_body(body, &request.body);
        pending.subscribe().block();
        let incoming = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(classify(code, &shown)),
            Some(Err(())) | None => return Err(Error::Http(format!("{shown}: no response"))),
        };
        written?;
        let status = incoming.status();
        let headers = incoming.headers().entries();
        let body = incoming
            .consume()
            .map_err(|()| Error::Body("response body taken twice".into()))?;
        let data = read_body(&body)?;
        drop(IncomingBody::finish(body));
        Ok(Response {
            status,
            headers,
            body: data,
        })
    }

    fn write_body(body: OutgoingBody, data: &[u8]) -> Result<(), Error> {
        {
            let stream = body
                .write()
                .map_err(|()| Error::Body("request stream taken twice".into()))?;
            for chunk in data.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| Error::Body(format!("writing the request body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|c| Error::Body(format!("{c:?}")))
    }

    fn read_body(body: &IncomingBody) -> Result<Vec<u8>, Error> {
        let stream = body
            .stream()
            .map_err(|()| Error::Body("response stream taken twice".into()))?;
        let mut data = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    if data.len() > MAX_RESPONSE {
                        return Err(Error::Body(format!(
                            "response larger than {MAX_RESPONSE} bytes"
                        )));
                    }
                }
                Err(StreamError::Closed) => return Ok(data),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::Body(e.to_debug_string()));
                }
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Error, Request, Response, Url};

    pub(super) fn send(_request: Request, _url: Url) -> Result<Response, Error> {
        panic!("gust_sdk::outbound works only inside a Wasm component")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_for_wasi_http() {
        let u = Url::parse("http://127.0.0.1:8080/hook?x=1#frag").unwrap();
        assert!(!u.https);
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path_with_query, "/hook?x=1");
        let u = Url::parse("HTTPS://example.com").unwrap();
        assert!(u.https);
        assert_eq!(u.path_with_query, "/");
        assert_eq!(
            Url::parse("https://e.com?q").unwrap().path_with_query,
            "/?q"
        );
        for bad in [
            "example.com/x",
            "ftp://e.com",
            "http:///x",
            "http://u@e.com/",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(Error::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_build_json_bodies() {
        let r = Request::post("http://h/x")
            .json(&serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(r.body, br#"{"a":1}"#);
        assert_eq!(r.headers[0].0, "content-type");
        assert!(Error::Timeout("x".into()).is_transient());
        assert!(!Error::Denied("x".into()).is_transient());
    }
}
