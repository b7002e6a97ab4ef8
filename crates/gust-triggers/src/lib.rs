//! Triggers: each module turns one kind of outside event into invocations.
//!
//! Triggers know nothing of wasmtime; they decide *which* function runs and
//! *whether* the caller may run it, and hand over to the dispatcher.

pub mod blob;
pub mod changefeed;
mod dispatch;
pub mod http;
mod load;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod ownership;
pub mod queue;
pub mod registry;
pub mod retry;
pub mod settings;
pub mod settle;
pub mod stream;
pub mod timer;
pub mod topic;
pub mod workflow;

#[cfg(test)]
mod test_support;

pub use dispatch::{Dispatcher, Shutdown};
pub use load::load_app;
