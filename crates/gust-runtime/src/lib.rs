//! Gust's WebAssembly runtime.
//!
//! * [`Runtime`] owns the wasmtime [`Engine`](wasmtime::Engine) (pooling
//!   allocator, epoch interruption with one engine-wide ticker) and the
//!   on-disk cache of compiled components ([`ComponentCache`]).
//! * [`HttpFunction`] is one pre-instantiated HTTP function: each request gets
//!   a fresh instance (or, opt-in, a reused one) with the function's limits
//!   and only the bindings it declared.
//! * [`body`] reads away request bodies nobody wants (shared with the host).
//!
//! The runtime knows nothing of triggers or engines such as NATS: bindings
//! reach resources only through the traits of `gust-backends`.

mod bindings;
pub mod body;
mod cache;
mod engine;
mod error;
mod event;
mod http;
mod invocation;
mod limits;
mod log;
mod memory;
mod observe;
mod outbound;
mod state;

pub use cache::ComponentCache;
pub use engine::{Runtime, RuntimeOptions};
pub use error::InvokeError;
pub use event::{Event, EventFunction, Outcome};
pub use gust_events::workflow::{RUN_EXTENSION, StepAnswer, StepFuture, StepRequest, WorkflowHost};
pub use http::{HttpFunction, HttpResponse, Https};
pub use invocation::InvocationIds;
pub use log::{LogLevel, LogSink};
pub use memory::{HeapUsage, heap_usage};
pub use observe::{FinishedInvocation, HttpFacts, InvocationObserver, InvocationTracer};
pub use state::{FunctionEnv, TopicPublisher};
