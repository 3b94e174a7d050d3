#![no_main]
//! A lab test run's JUnit report (written by whatever the project's tests are), read into
//! the results a task's status records: they must survive a round trip through the status
//! file's YAML exactly, whatever the test output held.

use gaffer::lab::junit::{parse_junit, summary_line};
use gaffer::state::status::TestResults;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(report) = parse_junit(xml) else {
        return;
    };
    let results = TestResults {
        suite: report.suite,
        passed: report.passed,
        failed: report.failed,
        skipped: report.skipped,
        failures: report.failures,
        at: jiff::Timestamp::UNIX_EPOCH,
    };
    let _ = summary_line(&results);
    let yaml = gaffer::state::yaml::to_string(&results).expect("results serialize");
    let back: TestResults = gaffer::state::yaml::parse(yaml.as_bytes())
        .unwrap_or_else(|e| panic!("results do not read back: {e}\n{yaml}"));
    assert_eq!(back, results, "{yaml}");
});
