//! HTTP functions: the [`Request`] a function receives and the [`Response`] it returns.
//!
//! An HTTP function is a plain Rust function marked with [`#[gust_sdk::http]`](macro@crate::http):
//!
//! ```no_run
//! use gust_sdk::http::{Request, Response};
//!
//! #[gust_sdk::http]
//! fn handle(req: Request) -> Response {
//!     let name = req.query("name").unwrap_or("world");
//!     Response::ok(format!("hello {name}"))
//! }
//! ```
//!
//! The macro exports the standard `wasi:http/incoming-handler`; the SDK reads the
//! whole request body before calling the function and streams the response body
//! back afterwards, whatever their size.
//!
//! Handlers may return anything that implements [`IntoResponse`]: a [`Response`], a
//! `String` or `&'static str` (200, `text/plain`), or a `Result` whose two sides
//! implement it. [`Result`] (= `Result<Response, Error>`) lets `?` turn any
//! `std::error::Error` into a `500` response.

use crate::form;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The request header in which the host passes the matched route parameters,
/// urlencoded (`id=42&kind=a%20b`).
pub const PARAMS_HEADER: &str = "x-gust-params";
/// The request header in which the host passes the matched route template (`/users/{id}`).
pub const ROUTE_HEADER: &str = "x-gust-route";
/// The request header in which the host passes the name of the function it invoked.
pub const FUNCTION_HEADER: &str = "x-gust-function";

/// Size of the pieces in which a response body is written to the host.
const WRITE_CHUNK: usize = 4096;
/// Size asked for in each read of the request body.
const READ_CHUNK: u64 = 64 * 1024;

/// An incoming HTTP request, fully read (headers and body).
///
/// Header names are matched case-insensitively. Query and route parameters are
/// decoded (`%20` and `+` become spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    query_pairs: Vec<(String, String)>,
    params: Vec<(String, String)>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// Builds a request by hand, e.g. to unit-test a handler natively:
    /// `Request::new("GET", "/hello?name=Ada")`.
    ///
    /// `path_with_query` is split at the first `?`; an empty path becomes `/`.
    /// The method is upper-cased.
    pub fn new(method: &str, path_with_query: &str) -> Self {
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path, query),
            None => (path_with_query, ""),
        };
        Request {
            method: method.to_ascii_uppercase(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            query: query.to_owned(),
            query_pairs: form::parse(query),
            params: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (the name is lower-cased). Adding [`PARAMS_HEADER`] sets the
    /// route parameters returned by [`param`](Self::param).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.push_header(name.to_ascii_lowercase(), value.into());
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn push_header(&mut self, name: String, value: Vec<u8>) {
        if name == PARAMS_HEADER {
            self.params = form::parse(&String::from_utf8_lossy(&value));
        }
        self.headers.push((name, value));
    }

    /// The method, upper-case (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path without the query string, still percent-encoded (`/users/42`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string without the leading `?` (empty when there is none).
    pub fn query_string(&self) -> &str {
        &self.query
    }

    /// The decoded value of the first query parameter called `name`.
    ///
    /// A parameter given without `=` (`?verbose`) has the value `""`.
    pub fn query(&self, name: &str) -> Option<&str> {
        form::lookup(&self.query_pairs, name)
    }

    /// All query parameters, decoded, in order (names may repeat).
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query_pairs
    }

    /// The decoded value of the route parameter `name` (for route `/users/{id}`
    /// and path `/users/42`, `param("id")` is `Some("42")`).
    pub fn param(&self, name: &str) -> Option<&str> {
        form::lookup(&self.params, name)
    }

    /// All route parameters, decoded.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The first value of header `name` (any case), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first value of header `name` (any case), as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every header as `(lower-case name, value)`, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The route template that matched, e.g. `/users/{id}` (from `x-gust-route`).
    pub fn route(&self) -> Option<&str> {
        self.header(ROUTE_HEADER)
    }

    /// The name of the function the host invoked (from `x-gust-function`).
    pub fn function_name(&self) -> Option<&str> {
        self.header(FUNCTION_HEADER)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// An HTTP response built by a function.
///
/// Constructors set the status and, where they know it, the `content-type`;
/// the `with_*` methods adjust the rest:
///
/// ```
/// use gust_sdk::http::Response;
/// let r = Response::status(201)
///     .with_header("location", "/items/7")
///     .with_body("created");
/// assert_eq!(r.status_code(), 201);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// `200 OK` with a `text/plain; charset=utf-8` body.
    pub fn ok(body: impl Into<String>) -> Self {
        Self::text(200, body)
    }

    /// A response with the given status and a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: vec![(
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )],
            body: body.into().into_bytes(),
        }
    }

    /// `200 OK` with `value` serialized as an `application/json` body.
    ///
    /// If `value` cannot be serialized (e.g. a map with non-string keys) the
    /// response is a `500` explaining why.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status: 200,
                headers: vec![("content-type".to_owned(), "application/json".to_owned())],
                body,
            },
            Err(e) => Self::text(
                500,
                format!("could not serialize the response as JSON: {e}"),
            ),
        }
    }

    /// A response with the given status, no headers and an empty body.
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `404 Not Found` with a short text body.
    pub fn not_found() -> Self {
        Self::text(404, "not found")
    }

    /// `400 Bad Request` with `message` as text body.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::text(400, message)
    }

    /// `500 Internal Server Error` with `message` as text body.
    pub fn internal_error(message: impl Into<String>) -> Self {
        Self::text(500, message)
    }

    /// Changes the status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets header `name` to `value`, replacing any earlier value of that header
    /// (use [`append_header`](Self::append_header) to repeat a header).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a value for header `name`, keeping earlier ones (e.g. `set-cookie`).
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body (headers, including `content-type`, are kept).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header as `(name, value)`, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// An error that a handler returns with `?`: it becomes a response with a status
/// code and a text body.
///
/// Any `std::error::Error` (a [`kv::Error`](crate::kv::Error), a
/// `serde_json::Error`, ...) converts into a `500 Internal Server Error`; use
/// [`Error::new`] or [`Error::bad_request`] for other statuses.
///
/// ```no_run
/// use gust_sdk::http::{self, Request, Response};
///
/// #[gust_sdk::http]
/// fn handle(req: Request) -> http::Result {
///     #[derive(serde::Deserialize)]
///     struct Input { n: u64 }
///     let input: Input = req.json().map_err(|e| http::Error::bad_request(e.to_string()))?;
///     let total = gust_sdk::kv::Store::open("counter")?.increment("total", input.n)?;
///     Ok(Response::json(&total))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: u16,
    message: String,
}

impl Error {
    /// An error answered with `status` and `message` as text body.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }

    /// `400 Bad Request` with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self::new(404, "not found")
    }

    /// `500 Internal Server Error` with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// The status code sent.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message sent as body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    /// `500 Internal Server Error` with the error's message.
    fn from(e: E) -> Self {
        Error::internal(e.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Response::text(self.status, self.message)
    }
}

/// What most handlers return: a response, or an [`Error`] that becomes one.
pub type Result<T = Response, E = Error> = std::result::Result<T, E>;

/// Anything an HTTP handler may return.
pub trait IntoResponse {
    /// Converts `self` into the response sent to the client.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for String {
    /// `200 OK`, `text/plain`.
    fn into_response(self) -> Response {
        Response::ok(self)
    }
}

impl IntoResponse for &'static str {
    /// `200 OK`, `text/plain`.
    fn into_response(self) -> Response {
        Response::ok(self)
    }
}

impl IntoResponse for () {
    /// `204 No Content`.
    fn into_response(self) -> Response {
        Response::status(204)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for std::result::Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// The glue between `wasi:http/incoming-handler` and a handler function; called by
/// the code that `#[gust_sdk::http]` generates.
#[doc(hidden)]
pub mod glue {
    use super::{IntoResponse, READ_CHUNK, Request, Response, WRITE_CHUNK};
    use wasip2::http::types::{
        Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };
    use wasip2::io::streams::StreamError;

    /// Reads `request`, runs `handler` and sends what it returns to `out`.
    pub fn serve<R, F>(request: IncomingRequest, out: ResponseOutparam, handler: F)
    where
        R: IntoResponse,
        F: FnOnce(Request) -> R,
    {
        let response = match read_request(request) {
            Ok(request) => handler(request).into_response(),
            Err(message) => Response::bad_request(format!("could not read the request: {message}")),
        };
        send_response(out, response);
    }

    fn method_name(method: Method) -> String {
        match method {
            Method::Get => "GET".to_owned(),
            Method::Head => "HEAD".to_owned(),
            Method::Post => "POST".to_owned(),
            Method::Put => "PUT".to_owned(),
            Method::Delete => "DELETE".to_owned(),
            Method::Connect => "CONNECT".to_owned(),
            Method::Options => "OPTIONS".to_owned(),
            Method::Trace => "TRACE".to_owned(),
            Method::Patch => "PATCH".to_owned(),
            Method::Other(other) => other,
        }
    }

    fn read_request(incoming: IncomingRequest) -> std::result::Result<Request, String> {
        let path_with_query = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
        let mut request = Request::new(&method_name(incoming.method()), &path_with_query);
        {
            let headers = incoming.headers();
            for (name, value) in headers.entries() {
                request.push_header(name.to_ascii_lowercase(), value);
            }
        }
        // wasi:http carries `Host` as the request's authority, not a header.
        if request.header("host").is_none()
            && let Some(authority) = incoming.authority()
        {
            request.push_header("host".to_owned(), authority.into_bytes());
        }
        request.body = read_body(&incoming)?;
        Ok(request)
    }

    /// Reads the whole body, chunk by chunk, until the stream is closed.
    fn read_body(incoming: &IncomingRequest) -> std::result::Result<Vec<u8>, String> {
        let Ok(body) = incoming.consume() else {
            return Err("the request body was already consumed".to_owned());
        };
        let mut data = Vec::new();
        {
            let Ok(stream) = body.stream() else {
                return Err("the request body stream was already taken".to_owned());
            };
            loop {
                match stream.blocking_read(READ_CHUNK) {
                    Ok(chunk) => data.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
                }
            }
        }
        // Trailers are not exposed; finishing releases the body.
        drop(wasip2::http::types::IncomingBody::finish(body));
        Ok(data)
    }

    /// Sends `response`, writing its body in chunks of at most `WRITE_CHUNK` bytes.
    fn send_response(out: ResponseOutparam, response: Response) {
        let Response {
            status,
            headers,
            body,
        } = response;
        let fields = Fields::new();
        let mut has_length = false;
        for (name, value) in &headers {
            has_length |= name.eq_ignore_ascii_case("content-length");
            if let Err(e) = fields.append(name, value.as_bytes()) {
                eprintln!("gust-sdk: dropped response header {name:?}: {e:?}");
            }
        }
        let bodiless = status < 200 || status == 204 || status == 304;
        if !has_length && !bodiless {
            let _ = fields.append("content-length", body.len().to_string().as_bytes());
        }
        let outgoing = OutgoingResponse::new(fields);
        if outgoing.set_status_code(status).is_err() {
            eprintln!("gust-sdk: invalid status code {status}, sending 500");
            let _ = outgoing.set_status_code(500);
        }
        let outgoing_body = outgoing.body().expect("the response body is taken once");
        ResponseOutparam::set(out, Ok(outgoing));
        if !bodiless {
            let stream = outgoing_body
                .write()
                .expect("the body stream is taken once");
            for chunk in body.chunks(WRITE_CHUNK) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    eprintln!("gust-sdk: could not write the response body: {e:?}");
                    return;
                }
            }
        }
        if let Err(e) = OutgoingBody::finish(outgoing_body, None) {
            eprintln!("gust-sdk: could not finish the response body: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_splits_path_and_query() {
        let req = Request::new("get", "/hello?name=Ada%20L&x=1+2&flag");
        assert_eq!(req.method(), "GET");
        assert_eq!(req.path(), "/hello");
        assert_eq!(req.query_string(), "name=Ada%20L&x=1+2&flag");
        assert_eq!(req.query("name"), Some("Ada L"));
        assert_eq!(req.query("x"), Some("1 2"));
        assert_eq!(req.query("flag"), Some(""));
        assert_eq!(req.query("nope"), None);
        assert_eq!(Request::new("GET", "").path(), "/");
        assert_eq!(Request::new("GET", "/a").query_string(), "");
    }

    #[test]
    fn request_params_and_headers() {
        let req = Request::new("GET", "/users/42")
            .with_header("X-Gust-Params", "id=42&kind=a%20b")
            .with_header("x-gust-route", "/users/{id}")
            .with_header("x-gust-function", "get-user")
            .with_header("Accept", "text/plain");
        assert_eq!(req.param("id"), Some("42"));
        assert_eq!(req.param("kind"), Some("a b"));
        assert_eq!(req.param("x"), None);
        assert_eq!(req.route(), Some("/users/{id}"));
        assert_eq!(req.function_name(), Some("get-user"));
        assert_eq!(req.header("ACCEPT"), Some("text/plain"));
        assert_eq!(req.headers().count(), 4);
    }

    #[test]
    fn request_body_helpers() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct In {
            n: u32,
        }
        let req = Request::new("POST", "/").with_body(r#"{"n":3}"#);
        assert_eq!(req.text().unwrap(), r#"{"n":3}"#);
        assert_eq!(req.json::<In>().unwrap(), In { n: 3 });
        assert!(
            Request::new("POST", "/")
                .with_body(vec![0xff])
                .text()
                .is_err()
        );
    }

    #[test]
    fn response_builders() {
        let r = Response::ok("hi");
        assert_eq!(r.status_code(), 200);
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.body(), b"hi");

        let r = Response::json(&serde_json::json!({"a": 1}));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body(), br#"{"a":1}"#);

        let r = Response::status(201)
            .with_header("content-type", "a")
            .with_header("Content-Type", "b")
            .append_header("set-cookie", "x=1")
            .append_header("set-cookie", "y=2")
            .with_body(vec![1, 2]);
        assert_eq!(r.header("content-type"), Some("b"));
        assert_eq!(r.headers().filter(|(n, _)| *n == "set-cookie").count(), 2);
        assert_eq!(r.body(), &[1, 2]);
        assert_eq!(r.with_status(202).status_code(), 202);
    }

    #[test]
    fn into_response_conversions() {
        assert_eq!("x".into_response(), Response::ok("x"));
        assert_eq!(String::from("y").into_response(), Response::ok("y"));
        assert_eq!(().into_response().status_code(), 204);
        let err: Result<Response, Response> = Err(Response::not_found());
        assert_eq!(err.into_response().status_code(), 404);
        let err: Result = Err("x".parse::<u8>().unwrap_err().into());
        let r = err.into_response();
        assert_eq!(r.status_code(), 500);
        assert_eq!(r.body(), b"invalid digit found in string");
        assert_eq!(
            Error::bad_request("no").into_response(),
            Response::text(400, "no")
        );
    }
}
