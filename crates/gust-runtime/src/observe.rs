//! What the runtime tells an observer (the host's metrics) about the
//! instances behind invocations: facts only the runtime knows.

use std::time::Duration;

use crate::error::InvokeError;

/// Receives facts about a function's invocations that only the runtime
/// sees. Called on the invocation path: implementations must be cheap
/// (relaxed atomics) and must not block.
pub trait InvocationObserver: Send + Sync {
    /// A new instance was created for an invocation (a cold start, as
    /// opposed to reusing a warm instance); creating it took `took`.
    fn instantiated(&self, took: Duration);

    /// An HTTP invocation failed after its response head was returned
    /// (while the guest was still writing the body), so its caller never
    /// saw the error.
    fn failed_late(&self, error: &InvokeError);
}
