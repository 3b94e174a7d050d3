//! The one place where state-repository YAML is parsed and written.
//!
//! Everything that reads a state file goes through [`parse`], so the hardening lives in one
//! spot: a size limit checked before parsing, UTF-8 checked with a located error, strict
//! booleans (`yes` is a string), duplicate keys rejected, and budgets on events, aliases and
//! nesting against YAML bombs. Errors carry the line and column the parser gives.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest state file accepted, in bytes. State files are small; anything bigger is a
/// mistake or an attack.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// A parse error with the position the parser reported, when it reported one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// What went wrong, in words, without the position.
    pub message: String,
}

impl YamlError {
    /// An error with no position.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error at a position.
    pub fn at(line: u32, column: u32, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
            max_events: 200_000,
            max_aliases: 100,
            max_anchors: 100,
            max_depth: 64,
            max_documents: 1,
            max_nodes: 100_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 100,
        },
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        strict_booleans: true,
    }
}

/// Checks that `bytes` is small enough and valid UTF-8, with a located error if not.
pub fn check_text(bytes: &[u8]) -> Result<&str, YamlError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(YamlError::new(format!(
            "file is {} bytes; state files are limited to {MAX_FILE_BYTES} bytes",
            bytes.len()
        )));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u32 + 1;
        YamlError::at(
            line,
            column,
            format!(
                "file is not valid UTF-8 (bad byte 0x{:02x} at offset {})",
                bytes[e.valid_up_to()],
                e.valid_up_to()
            ),
        )
    })
}

/// Parses one YAML document into `T` with the hardened options.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, YamlError> {
    let text = check_text(bytes)?;
    serde_saphyr::from_str_with_options::<T>(text, options()).map_err(convert)
}

fn convert(err: serde_saphyr::Error) -> YamlError {
    let inner = err.without_snippet();
    let rendered = inner.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let message = strip_location_suffix(&rendered)
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    let message = match message.strip_prefix("budget breached: ") {
        Some(detail) => format!("rejected as a possible YAML bomb (limit exceeded: {detail})"),
        None => message,
    };
    match inner.location() {
        Some(loc) if loc.line() > 0 => {
            YamlError::at(loc.line() as u32, loc.column() as u32, message)
        }
        _ => YamlError::new(message),
    }
}

/// The plain rendering ends in ` at line L, column C`; the position is reported separately.
fn strip_location_suffix(s: &str) -> String {
    let s = s.trim();
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains("column") => s[..i].trim_end().to_string(),
        _ => s.to_string(),
    }
}

/// Writes `value` as YAML. Files gaffer owns are always rewritten whole.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::new(e.to_string()))
}

/// A value with the position it was read from, for errors found after parsing
/// (cross-file checks). Serializes and describes itself exactly like `T`.
#[derive(Debug, Clone)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line (0 when the value was not read from a file).
    pub line: u32,
    /// 1-based column (0 when the value was not read from a file).
    pub column: u32,
}

impl<T> Located<T> {
    /// A value with no position, for values made in code.
    pub fn new(value: T) -> Self {
        Self {
            value,
            line: 0,
            column: 0,
        }
    }
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Located<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Self {
            value: s.value,
            line: s.referenced.line() as u32,
            column: s.referenced.column() as u32,
        })
    }
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// The largest multi-document stream [`parse_documents`] accepts, in bytes. Rendered
/// manifests are not state files and may be much bigger, but still bounded.
pub const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

/// Parses a multi-document YAML stream (e.g. rendered Kubernetes manifests) into one JSON
/// value per document, with the same hardening as [`parse`] but budgets sized for many
/// documents. Empty (null) documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<serde_json::Value>, YamlError> {
    if text.len() > MAX_STREAM_BYTES {
        return Err(YamlError::new(format!(
            "stream is {} bytes; rendered manifests are limited to {MAX_STREAM_BYTES} bytes",
            text.len()
        )));
    }
    let mut opts = options();
    opts.budget = serde_saphyr::budget! {
        max_reader_input_bytes: Some(MAX_STREAM_BYTES),
        max_events: 10_000_000,
        max_aliases: 100,
        max_anchors: 100,
        max_depth: 64,
        max_documents: 10_000,
        max_nodes: 5_000_000,
    };
    serde_saphyr::from_str_multiple_with_options::<serde_json::Value, Vec<_>>(text, opts)
        .map_err(convert)
}

/// `text` with its top-level scalar `key` set to `value` (a YAML scalar as written), the
/// rest of the file — comments, order, layout — kept as it was: the edit a person makes to
/// `cancel:` or `retry:`. A key that is missing is appended. The caller parses the result
/// and checks it says what was meant (a key whose value spans several lines is not
/// replaced by this).
pub fn set_top_level(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}:");
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 4);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if !done && line.starts_with(&prefix) {
            out.push_str(&format!("{key}: {value}\n"));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    if !done {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{key}: {value}\n"));
    }
    out
}
