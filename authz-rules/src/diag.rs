//! Errors and warnings about a rules (or cases) file, each pinned to a file,
//! line and column, with a hint that says what to do.

use std::fmt;
use std::ops::Range;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is usable, but a reviewer should look.
    Warning,
    /// The file is refused.
    Error,
}

/// One finding about a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable, kebab-case name for the kind of finding (`unknown-pbc`, ...).
    pub code: &'static str,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// Byte range of the offending text.
    #[serde(skip)]
    pub span: Range<usize>,
    /// The offending line, for display.
    #[serde(skip)]
    pub source_line: String,
    /// How many characters of that line to underline.
    #[serde(skip)]
    pub width: usize,
}

/// Every finding about one file. A file with at least one error is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// All findings, in file order (errors and warnings mixed).
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// True when there is at least one error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// True when there are no findings at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The findings as a JSON array (for `--format json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.items).unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub(crate) fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (a.span.start, b.severity).cmp(&(b.span.start, a.severity)));
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{kind}[{}]: {}", self.code, self.message)?;
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        writeln!(f, "{pad}--> {}:{}:{}", self.origin, self.line, self.column)?;
        if !self.source_line.is_empty() {
            writeln!(f, "{pad} |")?;
            writeln!(f, "{} | {}", self.line, self.source_line)?;
            writeln!(
                f,
                "{pad} | {}{}",
                " ".repeat(self.column.saturating_sub(1)),
                "^".repeat(self.width.max(1))
            )?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "{pad} = help: {help}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        write!(f, "{errors} error(s), {warnings} warning(s)")
    }
}

impl std::error::Error for Diagnostics {}

/// Turns byte spans of one text into located diagnostics.
pub(crate) struct Locator<'t> {
    text: &'t str,
    origin: &'t str,
    line_starts: Vec<usize>,
}

impl<'t> Locator<'t> {
    pub(crate) fn new(text: &'t str, origin: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self {
            text,
            origin,
            line_starts,
        }
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    /// The byte offset where a 1-based line starts.
    pub(crate) fn offset_of_line(&self, line: usize) -> usize {
        self.line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0)
    }

    /// A diagnostic at `span`.
    pub(crate) fn at(
        &self,
        severity: Severity,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let start = span.start.min(self.text.len());
        let line_idx = self
            .line_starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        let line_start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let line_end = self
            .line_starts
            .get(line_idx + 1)
            .map_or(self.text.len(), |&e| e.saturating_sub(1));
        let source_line = self
            .text
            .get(line_start..line_end)
            .unwrap_or("")
            .trim_end_matches('\r')
            .to_string();
        let column = self
            .text
            .get(line_start..start)
            .map_or(1, |s| s.chars().count() + 1);
        let width = self
            .text
            .get(start..span.end.min(self.text.len()))
            .and_then(|s| s.split('\n').next())
            .map_or(1, |first| first.chars().count().max(1));
        Diagnostic {
            severity,
            code,
            message: message.into(),
            help,
            origin: self.origin.to_string(),
            line: line_idx + 1,
            column,
            span: start..span.end.max(start),
            source_line,
            width,
        }
    }

    /// An error at `span`.
    pub(crate) fn error(
        &self,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) -> Diagnostic {
        self.at(Severity::Error, code, span, message, help.into())
    }

    /// A warning at `span`.
    pub(crate) fn warning(
        &self,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<Option<String>>,
    ) -> Diagnostic {
        self.at(Severity::Warning, code, span, message, help.into())
    }

    /// A TOML syntax or shape error, with a hint for the common cases.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> Diagnostic {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let (code, help) = if message.starts_with("unknown field") {
            (
                "unknown-key",
                Some(
                    "remove the key or fix its spelling; the expected keys are listed above".into(),
                ),
            )
        } else if message.starts_with("missing field") {
            ("missing-key", Some("add the key; it is required".into()))
        } else if message.starts_with("invalid type") {
            (
                "wrong-type",
                Some("check the value's type (strings are quoted, lists use [ ])".into()),
            )
        } else {
            (
                "toml-syntax",
                Some("fix the TOML syntax at this point".into()),
            )
        };
        self.error(code, span, message, help)
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
