//! Logging (`wasi:logging`): messages go to the host's log, tagged with the
//! function and the invocation.
//!
//! Functions take a message; the macros of the same name take `format!` arguments:
//!
//! ```no_run
//! use gust_sdk::log;
//! log::info("starting");
//! log::warn!("retrying {} of {}", 2, 5);
//! ```

use crate::__wit::wasi::logging::logging as wit;

/// How important a log message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging details.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the function handled.
    Warn,
    /// A failure.
    Error,
    /// A failure that needs immediate attention.
    Critical,
}

impl From<Level> for wit::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
            Level::Critical => wit::Level::Critical,
        }
    }
}

/// Logs `message` at `level` with a `context` (a short component name; may be empty).
pub fn log(level: Level, context: &str, message: &str) {
    wit::log(level.into(), context, message);
}

/// Logs `message` at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, "", message.as_ref());
}

/// Logs `message` at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, "", message.as_ref());
}

/// Logs `message` at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, "", message.as_ref());
}

/// Logs `message` at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, "", message.as_ref());
}

/// Logs `message` at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, "", message.as_ref());
}

/// Logs `message` at [`Level::Critical`].
pub fn critical(message: impl AsRef<str>) {
    log(Level::Critical, "", message.as_ref());
}

#[doc(inline)]
pub use crate::{debug, error, info, trace, warn};

/// Logs a `format!` message at trace level: `gust_sdk::log::trace!("x = {x}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(::std::format!($($arg)+)) };
}

/// Logs a `format!` message at debug level: `gust_sdk::log::debug!("x = {x}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(::std::format!($($arg)+)) };
}

/// Logs a `format!` message at info level: `gust_sdk::log::info!("x = {x}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(::std::format!($($arg)+)) };
}

/// Logs a `format!` message at warn level: `gust_sdk::log::warn!("x = {x}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(::std::format!($($arg)+)) };
}

/// Logs a `format!` message at error level: `gust_sdk::log::error!("x = {x}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(::std::format!($($arg)+)) };
}
