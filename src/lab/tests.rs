//! Lab tests: running the project's `lab.test` command against a lab deployment and reading
//! its JUnit XML report.
//!
//! The command is an argument vector run without a shell, so nothing from a task's text is
//! ever interpreted. JUnit is read with a small hand-written parser instead of an XML crate:
//! only elements, attributes, text, entities and CDATA matter here, and every crate added is
//! build time on every CI run. Without a report the exit status is the one result.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use jiff::Timestamp;

use super::{LabError, TestRunner};
use crate::state::status::{TestFailure, TestResults};

/// The report file the test command may leave in its working directory.
pub const REPORT_FILE: &str = "report.xml";

/// The suite name used when the report names none (or there is no report).
pub const DEFAULT_SUITE: &str = "Lab tests";

/// How many trailing output lines a failure without a report carries.
const TAIL_LINES: usize = 20;

/// How much of the end of the output is read to find those lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// The biggest report read; a larger one is reported as unreadable.
const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// The longest failure message kept from a report.
const MAX_MESSAGE_CHARS: usize = 2000;

/// Runs the test command as a child process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandTestRunner;

#[async_trait::async_trait]
impl TestRunner for CommandTestRunner {
    #[tracing::instrument(skip_all, fields(namespace = %namespace))]
    async fn run(
        &self,
        command: &[String],
        workdir: &Path,
        namespace: &str,
        url: &str,
    ) -> Result<TestResults, LabError> {
        let shown = command.join(" ");
        let Some((program, args)) = command.split_first() else {
            return Err(LabError::TestCommand {
                command: shown,
                message: "the command is empty".into(),
            });
        };

        // A report left by an earlier run must not pass for this run's result.
        let report = workdir.join(REPORT_FILE);
        match tokio::fs::remove_file(&report).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::Io {
                    path: report.display().to_string(),
                    source: e,
                });
            }
            _ => {}
        }

        // stdout and stderr share one file so the tail shows them interleaved as printed.
        let temp_err = |source| LabError::Io {
            path: "temporary output file".into(),
            source,
        };
        let log = tempfile::tempfile().map_err(temp_err)?;
        let log_out = log.try_clone().map_err(temp_err)?;
        let log_err = log.try_clone().map_err(temp_err)?;

        let status = tokio::process::Command::new(program)
            .args(args)
            .current_dir(workdir)
            .env("LAB_NAMESPACE", namespace)
            .env("LAB_URL", url)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_out))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| LabError::TestCommand {
                command: shown.clone(),
                message: e.to_string(),
            })?;
        let at = Timestamp::now();

        let (report_text, tail) =
            tokio::task::spawn_blocking(move || (read_report(&report), read_tail(log)))
                .await
                .map_err(|e| LabError::TestCommand {
                    command: shown.clone(),
                    message: format!("reading its output failed: {e}"),
                })?;
        let results = results_of(&shown, status, report_text, &tail, at);
        tracing::debug!(
            passed = results.passed,
            failed = results.failed,
            skipped = results.skipped,
            "lab tests ran"
        );
        Ok(results)
    }
}

/// Reads the report if the command left one: `None` when absent, `Some(Err)` when unreadable.
fn read_report(path: &Path) -> Option<Result<String, String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    if meta.len() > MAX_REPORT_BYTES {
        return Some(Err(format!(
            "it is {} bytes; reports are limited to {MAX_REPORT_BYTES} bytes",
            meta.len()
        )));
    }
    Some(
        std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| e.to_string()),
    )
}

/// The last [`TAIL_LINES`] lines of the command's output.
fn read_tail(mut log: std::fs::File) -> String {
    let mut read = || -> std::io::Result<String> {
        let len = log.seek(SeekFrom::End(0))?;
        log.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = read().unwrap_or_default();
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Combines the exit status, the report (if any) and the output tail into results.
fn results_of(
    shown: &str,
    status: ExitStatus,
    report: Option<Result<String, String>>,
    tail: &str,
    at: Timestamp,
) -> TestResults {
    let with_tail = |head: String| {
        if tail.is_empty() {
            head
        } else {
            format!("{head}\n{tail}")
        }
    };
    let parsed = report.map(|r| r.and_then(|xml| parse_junit(&xml).map_err(|e| e.to_string())));
    let mut results = TestResults {
        suite: DEFAULT_SUITE.to_string(),
        passed: 0,
        failed: 0,
        skipped: 0,
        failures: Vec::new(),
        at,
    };
    match parsed {
        Some(Ok(report)) => {
            results.suite = report.suite;
            results.passed = report.passed;
            results.failed = report.failed;
            results.skipped = report.skipped;
            results.failures = report.failures;
            // A crash after a clean report is still a failed run.
            if !status.success() && results.failed == 0 {
                results.failed = 1;
                results.failures.push(TestFailure {
                    name: shown.to_string(),
                    message: with_tail(format!(
                        "the command ended with {status} although its report shows no failures"
                    )),
                });
            }
        }
        Some(Err(why)) => {
            results.failed = 1;
            results.failures.push(TestFailure {
                name: REPORT_FILE.to_string(),
                message: format!("{REPORT_FILE} is not a readable JUnit report: {why}"),
            });
        }
        None if status.success() => results.passed = 1,
        None => {
            results.failed = 1;
            results.failures.push(TestFailure {
                name: shown.to_string(),
                message: if tail.is_empty() {
                    format!("the command ended with {status}")
                } else {
                    tail.to_string()
                },
            });
        }
    }
    results
}

/// What a JUnit report says.
#[derive(Debug, Clone, PartialEq)]
pub struct JunitReport {
    /// The first `<testsuite>`'s `name`, else the `<testsuites>` `name`, else `Lab tests`.
    pub suite: String,
    /// Cases with no failure, error or skip.
    pub passed: u32,
    /// Cases with a `<failure>` or an `<error>`.
    pub failed: u32,
    /// Cases with `<skipped>`.
    pub skipped: u32,
    /// The failed cases (`classname.name`, or `name`), with their messages.
    pub failures: Vec<TestFailure>,
}

/// A report that is not well-formed JUnit XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct JunitError {
    /// 1-based line of the problem.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// Parses a JUnit XML report (`<testsuites>` or a bare `<testsuite>`). Cases are counted from
/// `<testcase>` elements; the suites' `tests`/`failures`/`errors`/`skipped` attributes are
/// used only when a report lists no cases at all.
pub fn parse_junit(xml: &str) -> Result<JunitReport, JunitError> {
    let root = XmlParser::new(xml).document()?;
    if root.name != "testsuites" && root.name != "testsuite" {
        return Err(JunitError {
            line: 1,
            message: format!(
                "the root element is <{}>, not <testsuites> or <testsuite>",
                root.name
            ),
        });
    }
    let mut report = JunitReport {
        suite: String::new(),
        passed: 0,
        failed: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    let mut cases = 0usize;
    collect(&root, &mut report, &mut cases);
    if report.suite.is_empty() {
        report.suite = non_empty(root.attr("name"))
            .unwrap_or(DEFAULT_SUITE)
            .to_string();
    }
    if cases == 0 {
        let suites: Vec<&Element> = if root.has_counts() || root.name == "testsuite" {
            vec![&root]
        } else {
            root.children
                .iter()
                .filter(|c| c.name == "testsuite")
                .collect()
        };
        for s in suites {
            let n = |a: &str| s.attr(a).and_then(|v| v.trim().parse::<u32>().ok());
            let (failed, skipped) = (
                n("failures")
                    .unwrap_or(0)
                    .saturating_add(n("errors").unwrap_or(0)),
                n("skipped").or_else(|| n("disabled")).unwrap_or(0),
            );
            let tests = n("tests").unwrap_or(0);
            report.failed = report.failed.saturating_add(failed);
            report.skipped = report.skipped.saturating_add(skipped);
            report.passed = report
                .passed
                .saturating_add(tests.saturating_sub(failed).saturating_sub(skipped));
        }
    }
    Ok(report)
}

/// Walks suites and cases, counting each case once.
fn collect(el: &Element, report: &mut JunitReport, cases: &mut usize) {
    match el.name.as_str() {
        "testsuite" | "testsuites" => {
            if el.name == "testsuite"
                && report.suite.is_empty()
                && let Some(name) = non_empty(el.attr("name"))
            {
                report.suite = name.to_string();
            }
            for child in &el.children {
                collect(child, report, cases);
            }
        }
        "testcase" => {
            *cases += 1;
            let bad = el
                .children
                .iter()
                .find(|c| c.name == "failure" || c.name == "error");
            if let Some(bad) = bad {
                report.failed = report.failed.saturating_add(1);
                let name = el.attr("name").unwrap_or("").trim();
                let name = match (non_empty(el.attr("classname")), name.is_empty()) {
                    (Some(class), false) => format!("{class}.{name}"),
                    (Some(class), true) => class.to_string(),
                    (None, false) => name.to_string(),
                    (None, true) => "(unnamed test)".to_string(),
                };
                let message = non_empty(bad.attr("message"))
                    .map(str::to_string)
                    .or_else(|| non_empty(Some(&bad.text)).map(str::to_string))
                    .or_else(|| non_empty(bad.attr("type")).map(str::to_string))
                    .unwrap_or_else(|| bad.name.clone());
                report.failures.push(TestFailure {
                    name,
                    message: truncate(&message, MAX_MESSAGE_CHARS),
                });
            } else if el.children.iter().any(|c| c.name == "skipped") {
                report.skipped = report.skipped.saturating_add(1);
            } else {
                report.passed = report.passed.saturating_add(1);
            }
        }
        _ => {}
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// One line for people, e.g. `✅ Integration tests: 12/12 passing` or
/// `❌ Integration tests: 3 of 12 failing (test_x, test_y, …)`.
pub fn summary_line(r: &TestResults) -> String {
    let total = r.passed.saturating_add(r.failed);
    let skipped = if r.skipped > 0 {
        format!(", {} skipped", r.skipped)
    } else {
        String::new()
    };
    if r.failed == 0 {
        if total == 0 {
            return format!("⚠️ {}: no tests ran{skipped}", r.suite);
        }
        return format!("✅ {}: {}/{total} passing{skipped}", r.suite, r.passed);
    }
    const SHOWN: usize = 2;
    let mut names: Vec<String> = r
        .failures
        .iter()
        .take(SHOWN)
        .map(|f| truncate(short_name(&f.name), 60))
        .collect();
    if r.failures.len() > SHOWN || (r.failed as usize > SHOWN && !names.is_empty()) {
        names.push("…".into());
    }
    let names = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    };
    format!(
        "❌ {}: {} of {total} failing{names}{skipped}",
        r.suite, r.failed
    )
}

/// `tests.test_api.test_x[1.5]` → `test_x[1.5]`; names with spaces (commands) stay whole.
fn short_name(name: &str) -> &str {
    if name.contains(char::is_whitespace) {
        return name;
    }
    let base = name.split('[').next().unwrap_or(name);
    let cut = [
        base.rfind('.').map(|i| i + 1),
        base.rfind("::").map(|i| i + 2),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    if cut >= base.len() {
        name
    } else {
        &name[cut..]
    }
}

/// An XML element: just what JUnit needs.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    /// Character data directly inside the element (text and CDATA), entities decoded.
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_counts(&self) -> bool {
        self.attr("tests").is_some()
    }
}

/// Nesting deeper than this is not a test report (and would risk the stack).
const MAX_DEPTH: usize = 64;

/// A small recursive-descent XML reader: elements, attributes (either quote), text, the five
/// predefined entities and character references, CDATA, comments, processing instructions
/// and a DOCTYPE without an internal subset. Anything else is an error with its line.
struct XmlParser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> XmlParser<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn error(&self, message: impl Into<String>) -> JunitError {
        let line = self.src[..self.pos].matches('\n').count() + 1;
        JunitError {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    /// Skips past `end`, erroring with `what` when it never comes.
    fn skip_past(&mut self, end: &str, what: &str) -> Result<&'a str, JunitError> {
        match self.rest().find(end) {
            Some(i) => {
                let skipped = &self.rest()[..i];
                self.pos += i + end.len();
                Ok(skipped)
            }
            None => Err(self.error(format!("unterminated {what}"))),
        }
    }

    /// Skips whitespace, comments, processing instructions and a DOCTYPE.
    fn skip_misc(&mut self) -> Result<(), JunitError> {
        loop {
            self.skip_ws();
            let rest = self.rest();
            if rest.starts_with("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if rest.starts_with("<!--") {
                self.skip_past("-->", "comment")?;
            } else if rest.starts_with("<!DOCTYPE") {
                self.skip_past(">", "DOCTYPE")?;
            } else {
                return Ok(());
            }
        }
    }

    fn document(mut self) -> Result<Element, JunitError> {
        self.src = self.src.strip_prefix('\u{feff}').unwrap_or(self.src);
        self.skip_misc()?;
        if !self.rest().starts_with('<') {
            return Err(self.error(if self.rest().is_empty() {
                "the report is empty".to_string()
            } else {
                "expected an element".to_string()
            }));
        }
        let root = self.element(0)?;
        self.skip_misc()?;
        if !self.rest().is_empty() {
            return Err(self.error("unexpected content after the root element"));
        }
        Ok(root)
    }

    fn name(&mut self) -> Result<String, JunitError> {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '>' | '=' | '<' | '"' | '\''))
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(self.error("expected a name"));
        }
        self.pos += end;
        Ok(rest[..end].to_string())
    }

    /// Parses an element starting at `<`.
    fn element(&mut self, depth: usize) -> Result<Element, JunitError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("elements nest deeper than {MAX_DEPTH} levels")));
        }
        self.pos += 1; // '<'
        let mut el = Element {
            name: self.name()?,
            ..Element::default()
        };
        loop {
            self.skip_ws();
            let rest = self.rest();
            if rest.starts_with("/>") {
                self.pos += 2;
                return Ok(el);
            }
            if rest.starts_with('>') {
                self.pos += 1;
                break;
            }
            if rest.is_empty() {
                return Err(self.error(format!("unterminated <{}> tag", el.name)));
            }
            let key = self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return Err(self.error(format!("attribute {key:?} has no value")));
            }
            self.pos += 1;
            self.skip_ws();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return Err(self.error(format!("attribute {key:?} is not quoted"))),
            };
            self.pos += 1;
            let Some(end) = self.rest().find(quote) else {
                return Err(self.error(format!("unterminated value of attribute {key:?}")));
            };
            let raw = &self.rest()[..end];
            if raw.contains('<') {
                return Err(self.error(format!("'<' in the value of attribute {key:?}")));
            }
            let value = decode_entities(raw);
            self.pos += end + 1;
            el.attrs.push((key, value));
        }
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Err(self.error(format!("<{}> is never closed", el.name)));
            } else if rest.starts_with("</") {
                self.pos += 2;
                let name = self.name()?;
                if name != el.name {
                    return Err(self.error(format!("</{name}> closes <{}>", el.name)));
                }
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return Err(self.error(format!("unterminated </{name}> tag")));
                }
                self.pos += 1;
                return Ok(el);
            } else if rest.starts_with("<!--") {
                self.skip_past("-->", "comment")?;
            } else if rest.starts_with("<![CDATA[") {
                self.pos += "<![CDATA[".len();
                let data = self.skip_past("]]>", "CDATA section")?;
                el.text.push_str(data);
            } else if rest.starts_with("<?") {
                self.skip_past("?>", "processing instruction")?;
            } else if rest.starts_with('<') {
                let child = self.element(depth + 1)?;
                el.children.push(child);
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                el.text.push_str(&decode_entities(&rest[..end]));
                self.pos += end;
            }
        }
    }
}

/// Decodes the five predefined entities and numeric character references; anything else
/// that looks like an entity is kept as written.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.get(1..).and_then(|after| {
            let semi = after.find(';').filter(|&i| i <= 10)?;
            let entity = &after[..semi];
            let c = match entity {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ => {
                    let code = if let Some(hex) = entity
                        .strip_prefix("#x")
                        .or_else(|| entity.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()?
                    } else {
                        entity.strip_prefix('#')?.parse::<u32>().ok()?
                    };
                    char::from_u32(code)?
                }
            };
            Some((c, semi + 2))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// Not `mod tests`: this module is already `lab::tests`.
#[cfg(test)]
mod unit {
    use super::*;

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<!-- generated by pytest -->
<testsuites name="pytest tests">
  <testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="1.234"
             timestamp="2025-01-01T10:00:00" hostname="builder">
    <properties><property name="ns" value="web-shop-lab"/></properties>
    <testcase classname="tests.test_api" name="test_health" time="0.010" />
    <testcase classname='tests.test_api' name='test_list[1.5]' time='0.020'/>
    <testcase classname="tests.test_api" name="test_cart" time="0.100">
      <failure message="assert 1 == 2&#10;where &quot;x&quot; &lt; &apos;y&apos; &amp; z">def test_cart():
&gt;       assert 1 == 2
E       assert 1 == 2</failure>
      <system-out><![CDATA[some <output> & more]]></system-out>
    </testcase>
    <testcase classname="tests.test_db" name="test_conn" time="0.000">
      <error message="failed on setup with &quot;ConnectionError&quot;">trace</error>
    </testcase>
    <testcase classname="tests.test_db" name="test_later" time="0.000">
      <skipped type="pytest.skip" message="not yet">skip reason</skipped>
    </testcase>
  </testsuite>
</testsuites>
"#;

    #[test]
    fn parses_a_pytest_report() {
        let r = parse_junit(PYTEST).unwrap();
        assert_eq!(r.suite, "pytest");
        assert_eq!((r.passed, r.failed, r.skipped), (2, 2, 1));
        assert_eq!(
            r.failures,
            vec![
                TestFailure {
                    name: "tests.test_api.test_cart".into(),
                    message: "assert 1 == 2\nwhere \"x\" < 'y' & z".into(),
                },
                TestFailure {
                    name: "tests.test_db.test_conn".into(),
                    message: "failed on setup with \"ConnectionError\"".into(),
                },
            ]
        );
    }

    #[test]
    fn parses_a_bare_testsuite_and_uses_failure_text_without_a_message() {
        let xml = "<testsuite name=\"Integration tests\" tests=\"3\">\
            <testcase name=\"a\"/>\
            <testcase name=\"b\"><failure>expected 200, got 500 &amp; more</failure></testcase>\
            <testcase name=\"c\"></testcase></testsuite>";
        let r = parse_junit(xml).unwrap();
        assert_eq!(r.suite, "Integration tests");
        assert_eq!((r.passed, r.failed, r.skipped), (2, 1, 0));
        assert_eq!(r.failures[0].name, "b");
        assert_eq!(r.failures[0].message, "expected 200, got 500 & more");
    }

    #[test]
    fn unnamed_suites_are_lab_tests_and_count_attributes_are_a_fallback() {
        let r = parse_junit(
            "<testsuites><testsuite tests='4' failures='1' errors='1' skipped='1'/></testsuites>",
        )
        .unwrap();
        assert_eq!(r.suite, "Lab tests");
        assert_eq!((r.passed, r.failed, r.skipped), (1, 2, 1));
        assert!(r.failures.is_empty());
    }

    #[test]
    fn malformed_reports_are_errors() {
        for (xml, wanted) in [
            ("", "empty"),
            ("not xml", "expected an element"),
            ("<testsuite><testcase></testsuite>", "closes <testcase>"),
            ("<testsuite name=\"x\">", "never closed"),
            ("<testsuite name=x/>", "not quoted"),
            ("<testsuite name=\"x/>", "unterminated value"),
            ("<testsuite/><testsuite/>", "after the root"),
            ("<html/>", "root element is <html>"),
            ("<testsuite>\n<!-- open", "unterminated comment"),
        ] {
            let err = parse_junit(xml).unwrap_err();
            assert!(err.message.contains(wanted), "{xml:?}: {err}");
        }
        let err = parse_junit("<testsuite>\n\n<a></b></testsuite>").unwrap_err();
        assert_eq!(err.line, 3);
        let deep = "<a>".repeat(100_000);
        assert!(parse_junit(&deep).is_err());
    }

    #[test]
    fn entities_decode_and_unknown_ones_stay() {
        assert_eq!(
            decode_entities("&lt;&gt;&amp;&quot;&apos;&#65;&#x42; &nbsp; & ;"),
            "<>&\"'AB &nbsp; & ;"
        );
    }

    fn results(suite: &str, passed: u32, failed: u32, skipped: u32, names: &[&str]) -> TestResults {
        TestResults {
            suite: suite.into(),
            passed,
            failed,
            skipped,
            failures: names
                .iter()
                .map(|n| TestFailure {
                    name: (*n).into(),
                    message: String::new(),
                })
                .collect(),
            at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn summary_lines() {
        let r = results("Integration tests", 12, 0, 0, &[]);
        assert_eq!(summary_line(&r), "✅ Integration tests: 12/12 passing");
        let r = results(
            "Integration tests",
            9,
            3,
            0,
            &["tests.api.test_x", "tests.api.test_y", "test_z"],
        );
        assert_eq!(
            summary_line(&r),
            "❌ Integration tests: 3 of 12 failing (test_x, test_y, …)"
        );
        let r = results("Lab tests", 0, 1, 2, &["tests/a.py::test_p[0.5]"]);
        assert_eq!(
            summary_line(&r),
            "❌ Lab tests: 1 of 1 failing (test_p[0.5]), 2 skipped"
        );
        let r = results("Lab tests", 0, 1, 0, &["make lab-test"]);
        assert_eq!(
            summary_line(&r),
            "❌ Lab tests: 1 of 1 failing (make lab-test)"
        );
        let r = results("Lab tests", 0, 0, 0, &[]);
        assert_eq!(summary_line(&r), "⚠️ Lab tests: no tests ran");
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_string()).collect()
    }

    #[tokio::test]
    async fn runs_the_command_with_lab_env_and_reads_its_report() {
        let dir = tempfile::tempdir().unwrap();
        let script = "printf '%s\\n%s\\n' \"$LAB_NAMESPACE\" \"$LAB_URL\" > env.txt; \
            printf '<testsuite name=\"Integration tests\" tests=\"2\"><testcase name=\"a\"/>\
            <testcase name=\"b\"><failure message=\"boom\"/></testcase></testsuite>' > report.xml; \
            exit 1";
        let r = CommandTestRunner
            .run(
                &argv(&["sh", "-c", script]),
                dir.path(),
                "web-shop-lab",
                "https://shop.builder.example.test",
            )
            .await
            .unwrap();
        assert_eq!(r.suite, "Integration tests");
        assert_eq!((r.passed, r.failed, r.skipped), (1, 1, 0));
        assert_eq!(
            r.failures,
            vec![TestFailure {
                name: "b".into(),
                message: "boom".into()
            }]
        );
        let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
        assert_eq!(env, "web-shop-lab\nhttps://shop.builder.example.test\n");
        assert_eq!(summary_line(&r), "❌ Integration tests: 1 of 2 failing (b)");
    }

    #[tokio::test]
    async fn without_a_report_the_exit_status_decides() {
        let dir = tempfile::tempdir().unwrap();
        // A stale report from an earlier run must not count.
        std::fs::write(
            dir.path().join("report.xml"),
            "<testsuite><testcase name='old'><failure/></testcase></testsuite>",
        )
        .unwrap();
        let r = CommandTestRunner
            .run(&argv(&["true"]), dir.path(), "ns", "https://h")
            .await
            .unwrap();
        assert_eq!((r.suite.as_str(), r.passed, r.failed), ("Lab tests", 1, 0));
        assert!(!dir.path().join("report.xml").exists());

        let script = "for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3";
        let r = CommandTestRunner
            .run(&argv(&["sh", "-c", script]), dir.path(), "ns", "https://h")
            .await
            .unwrap();
        assert_eq!((r.suite.as_str(), r.passed, r.failed), ("Lab tests", 0, 1));
        let message = &r.failures[0].message;
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 20, "{message}");
        assert_eq!(lines[0], "line 12");
        assert_eq!(lines[19], "oops");
        assert_eq!(r.failures[0].name, format!("sh -c {script}"));
    }

    #[tokio::test]
    async fn a_failing_command_with_a_clean_report_still_fails() {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo '<testsuite><testcase name=\"a\"/></testsuite>' > report.xml; echo crashed; exit 2";
        let r = CommandTestRunner
            .run(&argv(&["sh", "-c", script]), dir.path(), "ns", "https://h")
            .await
            .unwrap();
        assert_eq!((r.passed, r.failed), (1, 1));
        assert!(
            r.failures[0].message.contains("crashed"),
            "{:?}",
            r.failures
        );
    }

    #[tokio::test]
    async fn an_unreadable_report_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let r = CommandTestRunner
            .run(
                &argv(&["sh", "-c", "echo '<testsuite>' > report.xml"]),
                dir.path(),
                "ns",
                "https://h",
            )
            .await
            .unwrap();
        assert_eq!((r.passed, r.failed), (0, 1));
        assert_eq!(r.failures[0].name, "report.xml");
        assert!(r.failures[0].message.contains("never closed"));
    }

    #[tokio::test]
    async fn commands_that_cannot_start_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = CommandTestRunner
            .run(
                &argv(&["./no-such-test-binary"]),
                dir.path(),
                "ns",
                "https://h",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LabError::TestCommand { command, .. } if command == "./no-such-test-binary"),
            "{err:?}"
        );
        let err = CommandTestRunner
            .run(&[], dir.path(), "ns", "https://h")
            .await
            .unwrap_err();
        assert!(matches!(err, LabError::TestCommand { .. }), "{err:?}");
    }
}
