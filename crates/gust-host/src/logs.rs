//! The host's log hub: every function's log lines, kept in memory for
//! `gust logs`, appended to `.gust/logs/functions.log`, and broadcast to
//! followers (`gust logs -f`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use gust_runtime::{LogLevel, LogSink};
use serde::Serialize;
use tokio::sync::broadcast;

/// Lines kept in memory.
const KEEP: usize = 10_000;

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// RFC 3339 time.
    pub time: String,
    /// `trace` .. `error`.
    pub level: String,
    /// The function it is about (`gust` for the host itself).
    pub function: String,
    /// The text.
    pub message: String,
}

impl LogLine {
    /// `time level [function] message`.
    pub fn render(&self) -> String {
        format!(
            "{} {:5} [{}] {}",
            self.time, self.level, self.function, self.message
        )
    }
}

/// Collects, stores and broadcasts log lines.
pub struct LogHub {
    recent: Mutex<VecDeque<LogLine>>,
    file: Mutex<Option<File>>,
    follow: broadcast::Sender<LogLine>,
    echo: bool,
}

impl LogHub {
    /// A hub writing to `dir/functions.log`; with `echo`, lines are also
    /// printed to stderr.
    pub fn new(dir: &Path, echo: bool) -> Self {
        let file = std::fs::create_dir_all(dir).ok().and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("functions.log"))
                .ok()
        });
        Self {
            recent: Mutex::new(VecDeque::with_capacity(1024)),
            file: Mutex::new(file),
            follow: broadcast::channel(4096).0,
            echo,
        }
    }

    /// The last `tail` lines, optionally only those of `function`.
    pub fn recent(&self, function: Option<&str>, tail: usize) -> Vec<LogLine> {
        let recent = self.recent.lock().expect("log lock");
        let mut lines: Vec<LogLine> = recent
            .iter()
            .rev()
            .filter(|l| function.is_none_or(|f| l.function == f))
            .take(tail)
            .cloned()
            .collect();
        lines.reverse();
        lines
    }

    /// New lines as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }
}

impl LogSink for LogHub {
    fn log(&self, function: &str, level: LogLevel, message: &str) {
        let line = LogLine {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            level: level.to_string(),
            function: function.to_string(),
            message: message.to_string(),
        };
        let rendered = line.render();
        if self.echo {
            eprintln!("{rendered}");
        }
        if let Some(file) = self.file.lock().expect("log lock").as_mut() {
            let _ = writeln!(file, "{rendered}");
        }
        {
            let mut recent = self.recent.lock().expect("log lock");
            if recent.len() == KEEP {
                recent.pop_front();
            }
            recent.push_back(line.clone());
        }
        let _ = self.follow.send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_filters_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::new(dir.path(), false);
        let mut rx = hub.subscribe();
        hub.log("a", LogLevel::Info, "one");
        hub.log("b", LogLevel::Warn, "two");
        hub.log("a", LogLevel::Error, "three");
        let a: Vec<_> = hub
            .recent(Some("a"), 10)
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(a, vec!["one", "three"]);
        assert_eq!(hub.recent(None, 1)[0].message, "three");
        assert_eq!(rx.try_recv().unwrap().message, "one");
        let file = std::fs::read_to_string(dir.path().join("functions.log")).unwrap();
        assert!(file.contains("[b] two"), "{file}");
    }
}
