//! Manifest errors that point at the exact place and say how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem in a `gust.toml`, located to a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line of the offending text (0 when unknown).
    pub line: usize,
    /// 1-based column of the offending text (0 when unknown).
    pub column: usize,
    /// Dotted key of the offending value, e.g. `function[1].trigger`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl ManifestError {
    /// Builds an error located at `span` (byte offsets into `source`).
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let (line, column) = span.map(|s| line_column(source, s.start)).unwrap_or((0, 0));
        Self {
            file: file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl ManifestError {
    /// Builds an error about the value at dotted `key` (e.g.
    /// `function[2].trigger.queue.batch_size`), located where `source`
    /// writes it, or where the deepest part of the key that is written is.
    pub fn at_key(
        file: &Path,
        source: &str,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let key = key.into();
        let (line, column) =
            crate::locate::locate(source, &crate::locate::key_steps(&key)).unwrap_or((0, 0));
        Self {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.key.is_empty() {
            write!(f, "\n  key: {}", self.key)?;
        }
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

/// 1-based line and column of byte `offset` in `source`.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        assert_eq!(line_column(src, 9), (2, 4));
    }

    #[test]
    fn display_names_file_line_key_and_fix() {
        let e = ManifestError::at(
            Path::new("app/gust.toml"),
            "x\ny = 1",
            Some(2..3),
            "y",
            "bad y",
            "remove y",
        );
        let text = e.to_string();
        assert!(text.starts_with("app/gust.toml:2:1: bad y"), "{text}");
        assert!(
            text.contains("key: y") && text.contains("fix: remove y"),
            "{text}"
        );
    }
}
