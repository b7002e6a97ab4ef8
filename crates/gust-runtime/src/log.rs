//! Where guest log output goes.

use std::fmt;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        })
    }
}

/// Receives the log lines of functions: `wasi:logging` calls, stdout/stderr
/// lines and the host's own reports about an invocation (traps, timeouts).
pub trait LogSink: Send + Sync {
    /// Records one line attributed to `function`.
    fn log(&self, function: &str, level: LogLevel, message: &str);
}
