//! # gust-sdk — write Gust functions in Rust
//!
//! A Gust function is a WebAssembly component built for `wasm32-wasip2`. This SDK
//! hides the component plumbing: an HTTP function is one annotated Rust function.
//!
//! ```no_run
//! use gust_sdk::{http::{Request, Response}, kv};
//!
//! #[gust_sdk::http]
//! fn handle(req: Request) -> Response {
//!     let name = req.query("name").unwrap_or("world");
//!     let n = kv::Store::open("counter").unwrap().increment("calls", 1).unwrap();
//!     Response::ok(format!("hello {name} #{n}"))
//! }
//! ```
//!
//! The function's crate is a `cdylib`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//! [dependencies]
//! gust-sdk = { path = "..." }
//! ```
//!
//! and is built with `cargo build --release --target wasm32-wasip2`.
//!
//! * [`#[gust_sdk::http]`](macro@http) exports the standard `wasi:http/incoming-handler`;
//!   see [`http`](mod@http) for [`Request`](http::Request) and [`Response`](http::Response).
//! * [`#[gust_sdk::event]`](macro@event) exports `gust:function/event-handler` for
//!   every other trigger; see [`event`](mod@event).
//! * Bindings declared in `gust.toml`: [`kv`] (key-value stores),
//!   [`sql`] (SQL databases), [`blob`] (containers), [`stream`] (append), [`table`] (document tables with a change
//!   feed), [`queue`] (send), [`topic`] (publish) and [`variables`];
//!   [`workflow`] writes durable workflows (orchestrators and activities);
//!   [`log`] writes to the host's log; [`outbound`] calls HTTP endpoints that
//!   the function's `outbound_http` rules allow.
//!
//! The native build of this crate (for unit tests of handlers) compiles, but any
//! call that reaches the host panics outside a Wasm component.

#![warn(missing_docs)]

mod form;

pub mod blob;
pub mod event;
pub mod http;
pub mod kv;
pub mod log;
pub mod outbound;
pub mod queue;
pub mod sql;
pub mod stream;
pub mod table;
pub mod topic;
pub mod variables;
pub mod workflow;

#[doc(hidden)]
#[path = "wit.rs"]
pub mod __wit;

pub use event::{Event, EventError};
pub use form::{decode as url_decode, encode as url_encode, parse as parse_urlencoded};

/// Marks the HTTP handler of a function: `fn(Request) -> impl IntoResponse`.
///
/// ```no_run
/// use gust_sdk::http::{Request, Response};
///
/// #[gust_sdk::http]
/// fn handle(req: Request) -> Response {
///     Response::ok(format!("you asked for {}", req.path()))
/// }
/// ```
///
/// The function is kept as written; the macro adds an export of the standard
/// `wasi:http/incoming-handler` that reads the request (headers and the whole
/// body), calls it and streams the response back. One per crate.
pub use gust_sdk_macros::http;

/// Marks the event handler of a function: `fn(Event) -> Result<(), EventError>`.
///
/// ```no_run
/// use gust_sdk::{Event, EventError};
///
/// #[gust_sdk::event]
/// fn handle(event: Event) -> Result<(), EventError> {
///     gust_sdk::log::info!("got {} from {}", event.ty(), event.source());
///     Ok(())
/// }
/// ```
///
/// The macro adds an export of `gust:function/event-handler`. One per crate.
pub use gust_sdk_macros::event;

/// The plain WASI 0.2 bindings (the `wasip2` crate), for what the SDK does not
/// wrap: clocks, random numbers, outgoing HTTP, ...
pub use wasip2 as wasi;

/// Re-exported so that functions need not depend on `serde_json` themselves.
pub use serde_json;

/// Items used by the code that the SDK's macros generate. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::glue as event;
    pub use crate::http::glue as http;
    pub use wasip2;
}
