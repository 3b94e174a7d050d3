#![no_main]
//! BMAD's epics file (written by a model, edited by people): the stories a `full` plan turns
//! into tasks, and the names and paths made from them.
//!
//! Properties: stories come out in file order, each once (`N.M` unique), each text starting
//! at its own heading; a plan document path accepted by `check_doc_path` stays relative and
//! never climbs out of the plan folder.

use gaffer::state::epics;
use gaffer::state::planning::check_doc_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(stories) = epics::parse(&text) {
        assert!(!stories.is_empty());
        let mut keys: Vec<String> = stories.iter().map(|s| s.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), stories.len(), "a story twice");
        for s in &stories {
            assert!(s.text.starts_with("###"), "{:?}", s.text);
            assert_eq!(s.key(), format!("{}.{}", s.epic, s.number));
            assert!(!s.title.is_empty());
        }
    }
    for line in text.lines().take(64) {
        if check_doc_path(line).is_ok() {
            assert!(!line.starts_with('/') && !line.split('/').any(|p| p == ".." || p.is_empty()));
        }
    }
});
