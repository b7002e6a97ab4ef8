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

impl std::str::FromStr for LogLevel {
    type Err = String;

    /// `trace`, `debug`, `info`, `warn` (or `warning`), `error`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "error" => Self::Error,
            other => {
                return Err(format!(
                    "unknown log level `{other}`: use trace, debug, info, warn or error"
                ));
            }
        })
    }
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

    /// Records one line of `function`'s `invocation` (a sink that keeps no
    /// ids records it as [`LogSink::log`] does).
    fn log_invocation(
        &self,
        function: &str,
        level: LogLevel,
        message: &str,
        invocation: &crate::InvocationIds,
    ) {
        let _ = invocation;
        self.log(function, level, message);
    }
}

/// Most lines one invocation may log (`wasi:logging`, stdout and stderr
/// together); later lines are dropped and counted.
pub const MAX_LINES_PER_INVOCATION: u32 = 1_000;
/// Most bytes one invocation may log.
pub const MAX_BYTES_PER_INVOCATION: usize = 256 << 10;
/// Longest line kept; a longer one is cut and marked.
pub const MAX_LINE_BYTES: usize = 8 << 10;

/// What one invocation may still log, so a guest that floods its log
/// cannot fill the host's disk or memory or drown other functions' lines.
#[derive(Debug, Clone)]
pub(crate) struct LogBudget {
    lines: u32,
    bytes: usize,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            lines: MAX_LINES_PER_INVOCATION,
            bytes: MAX_BYTES_PER_INVOCATION,
            dropped: 0,
        }
    }
}

impl LogBudget {
    /// `line` as it may be written (cut to [`MAX_LINE_BYTES`]), or `None`
    /// once the invocation's budget is spent.
    pub(crate) fn admit<'a>(&mut self, line: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let line = if line.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            std::borrow::Cow::Owned(format!(
                "{} [... {} more bytes]",
                &line[..end],
                line.len() - end
            ))
        } else {
            std::borrow::Cow::Borrowed(line)
        };
        if self.lines == 0 || self.bytes < line.len() {
            self.dropped += 1;
            self.lines = 0;
            return None;
        }
        self.lines -= 1;
        self.bytes -= line.len();
        Some(line)
    }

    /// The note to log at the end of an invocation that went over its
    /// budget (once), and a fresh budget for the next one.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let dropped = std::mem::take(self).dropped;
        (dropped > 0).then(|| {
            format!(
                "log limit reached: {dropped} lines of this invocation were dropped (at most {MAX_LINES_PER_INVOCATION} lines and {} KiB per invocation)",
                MAX_BYTES_PER_INVOCATION >> 10
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_at_the_line_budget_and_counted() {
        let mut budget = LogBudget::default();
        let admitted = (0..5_000).filter(|_| budget.admit("x").is_some()).count();
        assert_eq!(admitted, MAX_LINES_PER_INVOCATION as usize);
        let note = budget.finish().unwrap();
        assert!(note.contains("4000 lines"), "{note}");
        // The next invocation starts afresh.
        assert!(budget.admit("x").is_some());
        assert_eq!(budget.finish(), None);
    }

    #[test]
    fn long_lines_are_cut_and_bytes_are_bounded() {
        let mut budget = LogBudget::default();
        let long = "é".repeat(10_000);
        let cut = budget.admit(&long).unwrap();
        assert!(cut.len() < MAX_LINE_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with("more bytes]"), "{cut}");
        let mut total = cut.len();
        while let Some(line) = budget.admit(&long) {
            total += line.len();
        }
        assert!(total <= MAX_BYTES_PER_INVOCATION, "{total}");
    }
}
