//! Lab tests: running the project's `lab.test` command against a lab deployment and reading
//! its JUnit XML report.
//!
//! The command is an argument vector run without a shell, so nothing from a task's text is
//! ever interpreted. JUnit is read with `roxmltree` (well-formed XML 1.0; a DOCTYPE without an
//! internal subset is allowed, raw control characters are tolerated). Without a report the
//! exit status is the one result.

use std::borrow::Cow;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use jiff::Timestamp;
use roxmltree::{Document, Node, ParsingOptions};

use super::{LabError, TestRunner};
use crate::state::status::{TestFailure, TestResults};

/// The report file the test command may leave in its working directory.
pub const REPORT_FILE: &str = "report.xml";

/// The suite name used when the report names none (or there is no report).
pub const DEFAULT_SUITE: &str = "Lab tests";

/// How many trailing output lines a failure without a report carries.
const TAIL_LINES: usize = 20;

/// The biggest report read; a larger one is reported as unreadable.
const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// What of gaffer's environment a lab test command gets: the builders' allowlist
/// ([`crate::agent::sandbox::allowed`]) and how the machine reaches the network and its
/// package indexes (proxies, TLS roots, uv and pip settings) — never gaffer's tokens, as
/// the test command runs code the builder wrote.
pub fn test_env(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    const NETWORK: &[&str] = &[
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "XDG_CACHE_HOME",
    ];
    vars.into_iter()
        .filter(|(k, _)| {
            k.to_str().is_some_and(|k| {
                crate::agent::sandbox::allowed(k)
                    || NETWORK.contains(&k)
                    || k.starts_with("UV_")
                    || k.starts_with("PIP_")
            })
        })
        .collect()
}

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

        // The command runs code the builder wrote: none of gaffer's secrets go with it.
        let status = tokio::process::Command::new(program)
            .args(args)
            .current_dir(workdir)
            .env_clear()
            .envs(test_env(std::env::vars_os()))
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

        let (report_text, tail) = tokio::task::spawn_blocking(move || {
            (
                read_report(&report),
                crate::fsutil::tail_lines(log, TAIL_LINES),
            )
        })
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
    let xml = without_control_chars(xml);
    let doc = parse_xml(&xml)?;
    let root = doc.root_element();
    let root_name = root.tag_name().name();
    if root_name != "testsuites" && root_name != "testsuite" {
        return Err(JunitError {
            line: 1,
            message: format!("the root element is <{root_name}>, not <testsuites> or <testsuite>"),
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
    collect(root, &mut report, &mut cases);
    if report.suite.is_empty() {
        report.suite = non_empty(root.attribute("name"))
            .unwrap_or(DEFAULT_SUITE)
            .to_string();
    }
    if cases == 0 {
        let suites: Vec<Node<'_, '_>> = if root.has_attribute("tests") || root_name == "testsuite" {
            vec![root]
        } else {
            elements(root).filter(|c| is(*c, "testsuite")).collect()
        };
        for s in suites {
            let n = |a: &str| s.attribute(a).and_then(|v| v.trim().parse::<u32>().ok());
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
fn collect(el: Node<'_, '_>, report: &mut JunitReport, cases: &mut usize) {
    match el.tag_name().name() {
        "testsuite" | "testsuites" => {
            if is(el, "testsuite")
                && report.suite.is_empty()
                && let Some(name) = non_empty(el.attribute("name"))
            {
                report.suite = name.to_string();
            }
            for child in elements(el) {
                collect(child, report, cases);
            }
        }
        "testcase" => {
            *cases += 1;
            let bad = elements(el).find(|c| is(*c, "failure") || is(*c, "error"));
            if let Some(bad) = bad {
                report.failed = report.failed.saturating_add(1);
                let name = el.attribute("name").unwrap_or("").trim();
                let name = match (non_empty(el.attribute("classname")), name.is_empty()) {
                    (Some(class), false) => format!("{class}.{name}"),
                    (Some(class), true) => class.to_string(),
                    (None, false) => name.to_string(),
                    (None, true) => "(unnamed test)".to_string(),
                };
                let message = non_empty(bad.attribute("message"))
                    .map(str::to_string)
                    .or_else(|| non_empty(Some(&own_text(bad))).map(str::to_string))
                    .or_else(|| non_empty(bad.attribute("type")).map(str::to_string))
                    .unwrap_or_else(|| bad.tag_name().name().to_string());
                report.failures.push(TestFailure {
                    name,
                    message: truncate(&message, MAX_MESSAGE_CHARS),
                });
            } else if elements(el).any(|c| is(c, "skipped")) {
                report.skipped = report.skipped.saturating_add(1);
            } else {
                report.passed = report.passed.saturating_add(1);
            }
        }
        _ => {}
    }
}

/// The child elements of `el`.
fn elements<'a, 'input>(el: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    el.children().filter(Node::is_element)
}

/// Whether `el` is a `<name>` element.
fn is(el: Node<'_, '_>, name: &str) -> bool {
    el.tag_name().name() == name
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

/// Nesting deeper than this is not a test report.
const MAX_DEPTH: usize = 64;

/// A DOCTYPE is allowed (an internal subset is refused before parsing).
fn options<'input>() -> ParsingOptions<'input> {
    ParsingOptions {
        allow_dtd: true,
        ..ParsingOptions::default()
    }
}

/// Parses `xml` and checks that its elements nest at most [`MAX_DEPTH`] levels deep.
fn parse_xml(xml: &str) -> Result<Document<'_>, JunitError> {
    if xml.trim().is_empty() {
        return Err(JunitError {
            line: 1,
            message: "the report is empty".into(),
        });
    }
    // An internal DTD subset can declare entities that expand without bound; JUnit
    // reports have none. A plain `<!DOCTYPE name>` is fine.
    if let Some(at) = xml.find("<!DOCTYPE")
        && xml[at..]
            .find(['[', '>'])
            .is_some_and(|i| xml[at + i..].starts_with('['))
    {
        return Err(JunitError {
            line: line_at(xml, at),
            message: "a DOCTYPE with an internal subset is not supported".into(),
        });
    }
    let doc = Document::parse_with_options(xml, options()).map_err(|e| xml_error(xml, &e))?;
    check_depth(doc.root_element(), 0)?;
    Ok(doc)
}

/// Errs if an element inside `el` (at `depth`) is nested more than [`MAX_DEPTH`] levels deep.
fn check_depth(el: Node<'_, '_>, depth: usize) -> Result<(), JunitError> {
    if depth > MAX_DEPTH {
        return Err(JunitError {
            line: el.document().text_pos_at(el.range().start).row,
            message: format!("elements nest deeper than {MAX_DEPTH} levels"),
        });
    }
    elements(el).try_for_each(|child| check_depth(child, depth + 1))
}

/// Says what is wrong with a report roxmltree rejected, in the words people saw before.
fn xml_error(xml: &str, e: &roxmltree::Error) -> JunitError {
    use roxmltree::Error as E;
    let last_line = line_at(xml, xml.len());
    let at = |pos: roxmltree::TextPos, message: String| JunitError {
        line: pos.row,
        message,
    };
    match e {
        E::NoRootNode => JunitError {
            line: last_line,
            message: "expected an element".into(),
        },
        E::UnclosedRootNode => JunitError {
            line: last_line,
            message: "the root element is never closed".into(),
        },
        E::UnexpectedEndOfStream => JunitError {
            line: last_line,
            message: "unterminated value or tag at the end of the report".into(),
        },
        E::UnexpectedCloseTag(open, close, pos) => at(*pos, format!("</{close}> closes <{open}>")),
        E::InvalidChar2("a quote", _, pos) => at(*pos, "an attribute value is not quoted".into()),
        E::InvalidString(end, pos) => {
            let what = match *end {
                "-->" => "comment",
                "]]>" => "CDATA section",
                "?>" => "processing instruction",
                _ => return at(*pos, e.to_string()),
            };
            at(*pos, format!("unterminated {what} (expected {end:?})"))
        }
        E::UnknownToken(pos) => {
            // What came before the bad token tells whether the root element was complete.
            let before = &xml[..offset_of(xml, *pos)];
            let message = match Document::parse_with_options(before, options()) {
                Ok(_) => "unexpected content after the root element".to_string(),
                Err(E::NoRootNode) => "expected an element".to_string(),
                Err(_) => e.to_string(),
            };
            at(*pos, message)
        }
        _ => at(e.pos(), e.to_string()),
    }
}

/// The 1-based line of byte offset `at`.
fn line_at(xml: &str, at: usize) -> u32 {
    let line = xml[..at].matches('\n').count() + 1;
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// The byte offset of a roxmltree position (1-based row, column in characters).
fn offset_of(xml: &str, pos: roxmltree::TextPos) -> usize {
    let row = usize::try_from(pos.row).unwrap_or(usize::MAX);
    let col = usize::try_from(pos.col).unwrap_or(usize::MAX);
    let line_start = match row.checked_sub(2) {
        None => 0,
        Some(n) => xml
            .match_indices('\n')
            .nth(n)
            .map_or(xml.len(), |(i, _)| i + 1),
    };
    xml[line_start..]
        .char_indices()
        .nth(col.saturating_sub(1))
        .map_or(xml.len(), |(i, _)| line_start + i)
}

/// `xml` with the control characters XML 1.0 forbids (colour codes in captured output, say)
/// replaced by U+FFFD, so that such output does not make a whole report unreadable.
fn without_control_chars(xml: &str) -> Cow<'_, str> {
    let forbidden = |c: char| c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{7f}');
    if xml.contains(forbidden) {
        Cow::Owned(xml.replace(forbidden, "\u{fffd}"))
    } else {
        Cow::Borrowed(xml)
    }
}

/// The character data directly inside an element (text and CDATA, entities decoded).
fn own_text(el: Node<'_, '_>) -> String {
    el.children()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

#[cfg(test)]
mod tests;
