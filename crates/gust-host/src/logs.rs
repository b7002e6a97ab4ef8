//! The host's log hub: every function's log lines, kept in memory for
//! `gust logs`, appended to `.gust/logs/functions.log` (which is moved to
//! `functions.log.1` when it reaches [`MAX_FILE_BYTES`], so the log takes at
//! most twice that on disk), and broadcast to followers (`gust logs -f`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use gust_runtime::{InvocationIds, LogLevel, LogSink};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::secrets::Secrets;

/// Lines kept in memory, at most.
const KEEP_LINES: usize = 10_000;

/// Memory the kept lines may hold, at most: long lines (a function may log
/// up to 8 KiB in one) are forgotten sooner, so a chatty app cannot hold
/// 80 MiB of history.
const KEEP_BYTES: usize = 4 << 20;

/// Size at which the log file is moved aside and a new one begun.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The log file being appended to.
struct LogFile {
    path: PathBuf,
    file: File,
    len: u64,
    limit: u64,
}

impl LogFile {
    fn open(path: PathBuf, limit: u64) -> std::io::Result<Self> {
        let file = open_log_file(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            len,
            limit,
        })
    }

    /// Appends `line` (one write, so a kill never splits it), first moving a
    /// full file to `<name>.1` (replacing the previous one).
    fn append(&mut self, line: &str) {
        if self.len >= self.limit {
            let aside = self.path.with_extension("log.1");
            if std::fs::rename(&self.path, &aside).is_ok()
                && let Ok(file) = open_log_file(&self.path)
            {
                self.file = file;
                self.len = 0;
            }
        }
        let bytes = format!("{line}\n");
        if self.file.write_all(bytes.as_bytes()).is_ok() {
            self.len += bytes.len() as u64;
        }
    }
}

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// RFC 3339 time.
    pub time: String,
    /// `trace` .. `error`.
    #[serde(serialize_with = "level_text")]
    pub level: LogLevel,
    /// The function it is about (`gust` for the host itself).
    pub function: String,
    /// The text.
    pub message: String,
    /// The invocation that logged it, if a function did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
    /// The W3C trace id of that invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl LogLine {
    /// `time level [function] message`, then `[inv <first 8 digits>]`
    /// when an invocation logged it.
    pub fn render(&self) -> String {
        let mut text = format!(
            "{} {:5} [{}] {}",
            self.time,
            self.level.to_string(),
            self.function,
            self.message
        );
        if let Some(id) = &self.invocation {
            text.push_str(&format!(" [inv {}]", &id[..id.len().min(8)]));
        }
        text
    }

    /// One JSON object (for `gust logs --json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn level_text<S: serde::Serializer>(level: &LogLevel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&level.to_string())
}

/// Which lines a reader wants.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only this function's.
    pub function: Option<String>,
    /// Only lines at this level or above.
    pub min_level: Option<LogLevel>,
    /// Only this invocation's (its full id, or the 8-digit short form and
    /// more).
    pub invocation: Option<String>,
}

impl LogFilter {
    /// Whether `line` passes.
    pub fn accepts(&self, line: &LogLine) -> bool {
        self.function.as_deref().is_none_or(|f| line.function == f)
            && self.min_level.is_none_or(|min| line.level >= min)
            && self.invocation.as_deref().is_none_or(|wanted| {
                line.invocation
                    .as_deref()
                    .is_some_and(|id| wanted.len() >= 8 && id.starts_with(wanted))
            })
    }
}

/// The newest lines, bounded by count and by the memory they hold.
struct Recent {
    lines: VecDeque<LogLine>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Recent {
    fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(1024),
            bytes: 0,
            max_lines,
            max_bytes,
        }
    }

    /// Keeps `line`, forgetting the oldest lines past either bound (the
    /// newest line is always kept).
    fn push(&mut self, line: LogLine) {
        self.bytes += weight(&line);
        self.lines.push_back(line);
        while self.lines.len() > 1
            && (self.lines.len() > self.max_lines || self.bytes > self.max_bytes)
        {
            let oldest = self.lines.pop_front().expect("more than one line");
            self.bytes -= weight(&oldest);
        }
    }
}

/// The memory one kept line holds: its slot and its strings.
fn weight(line: &LogLine) -> usize {
    std::mem::size_of::<LogLine>()
        + line.time.len()
        + line.function.len()
        + line.message.len()
        + line.invocation.as_ref().map_or(0, String::len)
        + line.trace_id.as_ref().map_or(0, String::len)
}

/// Collects, stores and broadcasts log lines.
pub struct LogHub {
    recent: Mutex<Recent>,
    file: Mutex<Option<LogFile>>,
    follow: broadcast::Sender<LogLine>,
    echo: bool,
    /// Values never written out (see [`LogHub::hide`]).
    secrets: Mutex<Secrets>,
}

impl LogHub {
    /// A hub writing to `dir/functions.log`; with `echo`, lines are also
    /// printed to stderr.
    pub fn new(dir: &Path, echo: bool) -> Self {
        Self::with_file_limit(dir, echo, MAX_FILE_BYTES)
    }

    /// As [`LogHub::new`], moving the file aside at `limit` bytes.
    pub fn with_file_limit(dir: &Path, echo: bool, limit: u64) -> Self {
        let file = std::fs::create_dir_all(dir)
            .ok()
            .and_then(|_| LogFile::open(dir.join("functions.log"), limit).ok());
        Self {
            recent: Mutex::new(Recent::new(KEEP_LINES, KEEP_BYTES)),
            file: Mutex::new(file),
            follow: broadcast::channel(4096).0,
            echo,
            secrets: Mutex::new(Secrets::default()),
        }
    }

    /// From now on, lines show `[secret <name>]` instead of these values
    /// (secrets only accumulate: a value hidden once stays hidden).
    pub fn hide(&self, secrets: &Secrets) {
        let mut current = self.secrets.lock().expect("log lock");
        *current = current.merged(secrets);
    }

    /// The last `tail` lines that pass `filter`.
    pub fn recent(&self, filter: &LogFilter, tail: usize) -> Vec<LogLine> {
        let recent = self.recent.lock().expect("log lock");
        let mut lines: Vec<LogLine> = recent
            .lines
            .iter()
            .rev()
            .filter(|l| filter.accepts(l))
            .take(tail)
            .cloned()
            .collect();
        lines.reverse();
        lines
    }

    /// How many lines are kept for `gust logs` and the console, and the
    /// memory they hold.
    pub fn usage(&self) -> (usize, usize) {
        let recent = self.recent.lock().expect("log lock");
        (recent.lines.len(), recent.bytes)
    }

    /// New lines as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }
}

impl LogHub {
    fn record(&self, function: &str, level: LogLevel, message: &str, ids: Option<&InvocationIds>) {
        let line = LogLine {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            level,
            function: function.to_string(),
            message: self
                .secrets
                .lock()
                .expect("log lock")
                .redact(message)
                .into_owned(),
            invocation: ids.map(|i| i.id.clone()),
            trace_id: ids.map(|i| i.trace.trace_id.clone()),
        };
        let rendered = line.render();
        if self.echo {
            eprintln!("{rendered}");
        }
        if let Some(file) = self.file.lock().expect("log lock").as_mut() {
            file.append(&rendered);
        }
        self.recent.lock().expect("log lock").push(line.clone());
        let _ = self.follow.send(line);
    }
}

impl LogSink for LogHub {
    fn log(&self, function: &str, level: LogLevel, message: &str) {
        self.record(function, level, message, None);
    }

    fn log_invocation(
        &self,
        function: &str,
        level: LogLevel,
        message: &str,
        invocation: &InvocationIds,
    ) {
        self.record(function, level, message, Some(invocation));
    }
}

/// Opens `path` for appending. A host killed mid-write may have left a
/// torn last line; it is ended first, so the next line starts on its own.
fn open_log_file(path: &Path) -> std::io::Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
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
            .recent(
                &LogFilter {
                    function: Some("a".into()),
                    ..LogFilter::default()
                },
                10,
            )
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(a, vec!["one", "three"]);
        assert_eq!(hub.recent(&LogFilter::default(), 1)[0].message, "three");
        assert_eq!(rx.try_recv().unwrap().message, "one");
        let file = std::fs::read_to_string(dir.path().join("functions.log")).unwrap();
        assert!(file.contains("[b] two"), "{file}");
    }

    #[test]
    fn secret_values_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::new(dir.path(), false);
        let mut secrets = Secrets::default();
        secrets.add("token", "hunter2-xyz");
        hub.hide(&secrets);
        let mut rx = hub.subscribe();
        hub.log("a", LogLevel::Info, "calling with hunter2-xyz now");
        let expected = "calling with [secret token] now";
        assert_eq!(hub.recent(&LogFilter::default(), 1)[0].message, expected);
        assert_eq!(rx.try_recv().unwrap().message, expected);
        let file = std::fs::read_to_string(dir.path().join("functions.log")).unwrap();
        assert!(
            !file.contains("hunter2") && file.contains(expected),
            "{file}"
        );
    }

    #[test]
    fn lines_carry_their_invocation_and_filter_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::new(dir.path(), false);
        let ids = InvocationIds::new(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        hub.log_invocation("a", LogLevel::Info, "mine", &ids);
        hub.log_invocation("a", LogLevel::Error, "mine too", &ids);
        hub.log("a", LogLevel::Error, "not an invocation's");
        let only = |filter: LogFilter| -> Vec<String> {
            hub.recent(&filter, 10)
                .into_iter()
                .map(|l| l.message)
                .collect()
        };
        let by_id = LogFilter {
            invocation: Some(ids.id[..8].to_string()),
            ..LogFilter::default()
        };
        assert_eq!(only(by_id), vec!["mine", "mine too"]);
        let errors = LogFilter {
            min_level: Some(LogLevel::Warn),
            ..LogFilter::default()
        };
        assert_eq!(only(errors), vec!["mine too", "not an invocation's"]);
        let line = &hub.recent(&LogFilter::default(), 3)[0];
        assert!(
            line.render()
                .ends_with(&format!("mine [inv {}]", &ids.id[..8]))
        );
        let json: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(json["invocation"], ids.id.as_str());
        assert_eq!(json["level"], "info");
    }

    fn line(message: &str) -> LogLine {
        LogLine {
            time: "2026-12-04T00:00:00.000Z".into(),
            level: LogLevel::Info,
            function: "f".into(),
            message: message.into(),
            invocation: None,
            trace_id: None,
        }
    }

    #[test]
    fn kept_lines_are_bounded_by_count_and_by_bytes() {
        let mut by_count = Recent::new(3, usize::MAX);
        for i in 0..10 {
            by_count.push(line(&i.to_string()));
        }
        let kept: Vec<_> = by_count.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(kept, ["7", "8", "9"]);

        let long = "x".repeat(8 << 10);
        let mut by_bytes = Recent::new(usize::MAX, 64 << 10);
        for _ in 0..100 {
            by_bytes.push(line(&long));
        }
        assert!(by_bytes.bytes <= 64 << 10, "{}", by_bytes.bytes);
        assert_eq!(by_bytes.lines.len(), by_bytes.bytes / weight(&line(&long)));
        assert_eq!(by_bytes.lines.len(), 7);
        let total: usize = by_bytes.lines.iter().map(weight).sum();
        assert_eq!(total, by_bytes.bytes, "the count follows what is kept");

        let mut tiny = Recent::new(10, 1);
        tiny.push(line(&long));
        assert_eq!(tiny.lines.len(), 1, "the newest line is always kept");
    }

    #[test]
    fn a_full_file_is_moved_aside_once() {
        let dir = tempfile::tempdir().unwrap();
        let hub = LogHub::with_file_limit(dir.path(), false, 1000);
        for i in 0..100 {
            hub.log("a", LogLevel::Info, &format!("line {i}"));
        }
        let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size("functions.log") <= 1100, "{}", size("functions.log"));
        assert!(size("functions.log.1") <= 1100);
        let newest = std::fs::read_to_string(dir.path().join("functions.log")).unwrap();
        assert!(newest.trim_end().ends_with("line 99"), "{newest}");
    }

    #[test]
    fn a_torn_last_line_is_ended_before_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("functions.log"), "complete\ntorn li").unwrap();
        let hub = LogHub::new(dir.path(), false);
        hub.log("a", LogLevel::Info, "next");
        let file = std::fs::read_to_string(dir.path().join("functions.log")).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 3, "{file}");
        assert_eq!(lines[1], "torn li");
        assert!(lines[2].ends_with("[a] next"), "{file}");
    }
}
