#![no_main]
//! A state repository's files, any of them at any path, through every check of `gaffer
//! validate` (which is also what the reconciler and the bot read the repository with).
//!
//! Input: files separated by NUL bytes, each `path\ncontent`.

use gaffer::state::snapshot::RawContent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files: Vec<(String, RawContent)> = data
        .split(|b| *b == 0)
        .filter_map(|chunk| {
            let nl = chunk.iter().position(|b| *b == b'\n')?;
            let path = std::str::from_utf8(&chunk[..nl]).ok()?;
            Some((path.to_string(), RawContent::Blob(chunk[nl + 1..].to_vec())))
        })
        .collect();
    let report = gaffer::validate::report(files, Vec::new());
    assert_eq!(report.valid, report.problems.is_empty());
    let _ = report.summary();
    let json = serde_json::to_string(&report).expect("a report serializes");
    assert!(!json.is_empty());
});
