//! The Prometheus text exposition format, version 0.0.4: metric families
//! (`# HELP`, `# TYPE`, then every sample of the family together), label
//! values escaped, histograms as cumulative `_bucket{le=...}` series plus
//! `_sum` and `_count`.

use std::fmt::Write;

use super::histogram::Snapshot;

/// The `Content-Type` of a scrape response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family's samples mean to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family: its name, help, type and the sample lines so far.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: String,
}

impl Family {
    /// Adds a counter or gauge sample with `labels`.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Value) {
        self.line(self.name, "", labels, None, value);
    }

    /// Adds one histogram series with `labels`: a cumulative
    /// `_bucket{le=...}` per bound and `+Inf`, then `_sum` and `_count`.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Snapshot) {
        let mut cumulative = 0;
        for (le, count) in h.bounds.iter().zip(&h.counts) {
            cumulative += count;
            self.line(self.name, "_bucket", labels, Some(*le), cumulative);
        }
        self.line(self.name, "_bucket", labels, Some("+Inf"), h.count);
        self.line(self.name, "_sum", labels, None, h.sum);
        self.line(self.name, "_count", labels, None, h.count);
    }

    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: impl Value,
    ) {
        let out = &mut self.samples;
        out.push_str(name);
        out.push_str(suffix);
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        let mut first = true;
        for (key, value) in all {
            out.push(if first { '{' } else { ',' });
            first = false;
            out.push_str(key);
            out.push_str("=\"");
            escape_label(out, value);
            out.push('"');
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
        value.write(out);
        out.push('\n');
    }
}

/// A sample value as the format writes it.
pub trait Value {
    /// Appends the value's text to `out`.
    fn write(self, out: &mut String);
}

impl Value for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// The families of one scrape, in the order they were first asked for.
/// Several sources (the apps of a multi-app `gust up`) add samples to the
/// same families, so each family is written once, all its samples together.
#[derive(Debug, Default)]
pub struct Families {
    families: Vec<Family>,
}

impl Families {
    /// The family `name`, created with `help` and `kind` on first use.
    pub fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        let at = match self.families.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                self.families.push(Family {
                    name,
                    help,
                    kind,
                    samples: String::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[at]
    }

    /// The exposition text. Families without samples are left out.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for f in self.families.iter().filter(|f| !f.samples.is_empty()) {
            out.push_str("# HELP ");
            out.push_str(f.name);
            out.push(' ');
            escape_help(&mut out, f.help);
            out.push_str("\n# TYPE ");
            out.push_str(f.name);
            out.push(' ');
            out.push_str(f.kind.as_str());
            out.push('\n');
            out.push_str(&f.samples);
        }
        out
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes help text: backslash and line feed.
fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_with_escaped_labels() {
        let mut f = Families::default();
        f.family("c_total", "a count", Kind::Counter)
            .sample(&[("app", "a\"b\\c\nd"), ("fn", "x")], 3u64);
        f.family("g", "back\\slash\nline", Kind::Gauge)
            .sample(&[], -2i64);
        f.family("empty", "never sampled", Kind::Gauge);
        assert_eq!(
            f.encode(),
            "# HELP c_total a count\n# TYPE c_total counter\n\
             c_total{app=\"a\\\"b\\\\c\\nd\",fn=\"x\"} 3\n\
             # HELP g back\\\\slash\\nline\n# TYPE g gauge\ng -2\n"
        );
    }

    #[test]
    fn samples_of_one_family_stay_together() {
        let mut f = Families::default();
        f.family("a", "A", Kind::Counter)
            .sample(&[("app", "1")], 1u64);
        f.family("b", "B", Kind::Counter)
            .sample(&[("app", "1")], 2u64);
        f.family("a", "A", Kind::Counter)
            .sample(&[("app", "2")], 3u64);
        let text = f.encode();
        assert_eq!(text.matches("# TYPE a counter").count(), 1);
        assert!(
            text.contains("a{app=\"1\"} 1\na{app=\"2\"} 3\n# HELP b"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let snapshot = Snapshot {
            bounds: &["0.1", "1"],
            counts: vec![2, 1],
            count: 4,
            sum: 7.25,
        };
        let mut f = Families::default();
        f.family("d_seconds", "durations", Kind::Histogram)
            .histogram(&[("fn", "x")], &snapshot);
        assert_eq!(
            f.encode(),
            "# HELP d_seconds durations\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{fn=\"x\",le=\"0.1\"} 2\n\
             d_seconds_bucket{fn=\"x\",le=\"1\"} 3\n\
             d_seconds_bucket{fn=\"x\",le=\"+Inf\"} 4\n\
             d_seconds_sum{fn=\"x\"} 7.25\n\
             d_seconds_count{fn=\"x\"} 4\n"
        );
    }

    #[test]
    fn float_values() {
        let text = |v: f64| {
            let mut s = String::new();
            v.write(&mut s);
            s
        };
        assert_eq!(text(0.001), "0.001");
        assert_eq!(text(2.0), "2");
        assert_eq!(text(f64::INFINITY), "+Inf");
        assert_eq!(text(f64::NEG_INFINITY), "-Inf");
        assert_eq!(text(f64::NAN), "NaN");
    }
}
