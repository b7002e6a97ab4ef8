//! `wasi:logging/logging`: guest log lines go to the function's log sink.

use super::generated::wasi::logging::logging::{Host, Level};
use crate::log::LogLevel;
use crate::state::HostState;

impl Host for HostState {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error | Level::Critical => LogLevel::Error,
        };
        let line = if context.is_empty() {
            message
        } else {
            format!("{context}: {message}")
        };
        self.guest_log(level, &line);
        Ok(())
    }
}
