//! A progress bar for builds.

use std::time::Duration;

use gust_host::builder::BuildProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// Draws `building [=====>   ] 2/5 crate-name` on stderr.
pub struct BuildBar {
    bar: ProgressBar,
}

impl BuildBar {
    /// A hidden bar until `start`.
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} building [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Self { bar }
    }
}

impl BuildProgress for BuildBar {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
        if total > 0 {
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    fn building(&self, package: &str) {
        self.bar.set_message(package.to_string());
    }

    fn built(&self, _package: &str) {
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
