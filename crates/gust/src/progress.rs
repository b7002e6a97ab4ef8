//! What `gust up` and `gust build` show while they work: one line per phase
//! with the time since start and the phase's own duration, and a progress
//! bar while functions build (on a terminal; elsewhere a line every few
//! seconds, so a log never goes silent for a minute).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gust_host::builder::BuildProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// How often a build reports on a stream that is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The clock of one command: prints `gust: [  12.3s] <phase> ...` lines.
pub struct Phases {
    start: Instant,
}

impl Phases {
    /// Starts the clock.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Prints `text` with the time since start.
    pub fn line(&self, text: &str) {
        eprintln!("gust: [{}] {text}", clock(self.start.elapsed()));
    }

    /// Begins phase `name` (printed now); end it with [`Phase::done`] or
    /// [`Phase::failed`].
    pub fn begin(&self, name: impl Into<String>) -> Phase<'_> {
        let name = name.into();
        self.line(&format!("{name} ..."));
        Phase {
            phases: self,
            name,
            start: Instant::now(),
        }
    }

    /// Runs `work` as phase `name`, ending it with its outcome.
    pub fn run<T>(
        &self,
        name: &str,
        work: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let phase = self.begin(name);
        match work() {
            Ok(value) => {
                phase.done("");
                Ok(value)
            }
            Err(e) => {
                phase.failed(&format!("{e:#}"));
                Err(e)
            }
        }
    }
}

/// A phase under way.
pub struct Phase<'a> {
    phases: &'a Phases,
    name: String,
    start: Instant,
}

impl Phase<'_> {
    /// Prints `<phase>: done <summary> (<duration>)`.
    pub fn done(self, summary: &str) {
        let sep = if summary.is_empty() { "" } else { " " };
        self.phases.line(&format!(
            "{}: done{sep}{summary} ({})",
            self.name,
            short(self.start.elapsed())
        ));
    }

    /// Prints `<phase>: FAILED after <duration>: <first line of the error>`.
    pub fn failed(self, error: &str) {
        let first = error.lines().next().unwrap_or_default();
        self.phases.line(&format!(
            "{}: FAILED after {}: {first}",
            self.name,
            short(self.start.elapsed())
        ));
    }
}

/// `  12.3s` / `2m05.1s`, fixed width for aligned lines.
fn clock(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:6.1}s")
    } else {
        format!("{}m{:04.1}s", d.as_secs() / 60, secs % 60.0)
    }
}

/// `0.4s`, `1m12s`.
fn short(d: Duration) -> String {
    if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Draws `building [=====>   ] 2/5 functions, 87 crates compiled (serde)`
/// on stderr and counts what was built for the phase summary.
pub struct BuildBar {
    bar: ProgressBar,
    terminal: bool,
    started: Instant,
    compiled: AtomicUsize,
    fresh: AtomicUsize,
    built: AtomicUsize,
    total: AtomicUsize,
    last_log: Mutex<Instant>,
}

impl BuildBar {
    /// A hidden bar until `start`.
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} building [{bar:25}] {pos}/{len} functions, {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self {
            bar,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            compiled: AtomicUsize::new(0),
            fresh: AtomicUsize::new(0),
            built: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// `33 functions built, 148 crates compiled (20 up to date)`.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} functions built, {} crates compiled ({} up to date)",
            self.built.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.compiled.load(Ordering::Relaxed),
            self.fresh.load(Ordering::Relaxed)
        )
    }

    /// On a non-terminal stream: a status line at most every [`LOG_EVERY`].
    fn log_now(&self, last: &str) {
        if self.terminal {
            return;
        }
        let mut when = self.last_log.lock().expect("log lock");
        if when.elapsed() >= LOG_EVERY {
            *when = Instant::now();
            eprintln!(
                "gust:   ... {}/{} functions, {} crates compiled, last {last} ({})",
                self.built.load(Ordering::Relaxed),
                self.total.load(Ordering::Relaxed),
                self.compiled.load(Ordering::Relaxed),
                short(self.started.elapsed())
            );
        }
    }
}

impl BuildProgress for BuildBar {
    fn start(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
        self.bar.set_length(total as u64);
        self.bar.set_message("0 crates compiled");
        if total > 0 && self.terminal {
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    fn compiled(&self, unit: &str, fresh: bool) {
        let n = self.compiled.fetch_add(1, Ordering::Relaxed) + 1;
        if fresh {
            self.fresh.fetch_add(1, Ordering::Relaxed);
        }
        self.bar
            .set_message(format!("{n} crates compiled ({unit})"));
        self.log_now(unit);
    }

    fn note(&self, text: &str) {
        if self.terminal {
            self.bar.println(format!("gust:   {text}"));
        } else {
            eprintln!("gust:   {text}");
        }
    }

    fn built(&self, name: &str) {
        self.built.fetch_add(1, Ordering::Relaxed);
        self.bar.inc(1);
        self.log_now(name);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_well() {
        assert_eq!(clock(Duration::from_millis(12_345)), "  12.3s");
        assert_eq!(clock(Duration::from_millis(125_100)), "2m05.1s");
        assert_eq!(short(Duration::from_millis(400)), "0.4s");
        assert_eq!(short(Duration::from_secs(72)), "1m12s");
    }

    #[test]
    fn the_summary_counts_crates_and_functions() {
        let bar = BuildBar::new();
        bar.start(2);
        bar.compiled("serde", true);
        bar.compiled("hello", false);
        bar.built("hello");
        bar.finish();
        assert_eq!(
            bar.summary(),
            "1 of 2 functions built, 2 crates compiled (1 up to date)"
        );
    }
}
