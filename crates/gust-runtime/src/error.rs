//! Why an invocation failed, classified for a response and a log line.

use std::time::Duration;

use thiserror::Error;

/// An invocation did not produce a result.
#[derive(Debug, Error)]
pub enum InvokeError {
    /// The guest ran past its timeout and was interrupted.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The guest tried to grow its memory beyond its limit.
    #[error("exceeded its memory limit of {0} bytes")]
    OutOfMemory(u64),
    /// The guest exhausted its call stack.
    #[error("overflowed its stack")]
    StackOverflow,
    /// The guest trapped (a panic, an unreachable, an out-of-bounds access...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The guest returned without setting a response.
    #[error("returned no response")]
    NoResponse,
    /// The instance could not be created.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl InvokeError {
    /// The HTTP status that reports this failure to a caller.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable reason (`timeout`, `out-of-memory`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::OutOfMemory(_) => "out-of-memory",
            Self::StackOverflow => "stack-overflow",
            Self::Trap(_) => "trap",
            Self::NoResponse => "no-response",
            Self::Instantiate(_) => "instantiate",
        }
    }
}
