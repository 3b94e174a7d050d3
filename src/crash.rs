//! Crash points for the kill -9 tests: with `GAFFER_CRASH_AT=<point>` in its environment,
//! the process SIGKILLs itself the moment it reaches that point, as a power cut would stop
//! it there. Points are named where they are placed (`override:stopped`, …); unset (always,
//! outside those tests) a point costs one comparison.

use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const ENV: &str = "GAFFER_CRASH_AT";

/// SIGKILLs this process if `name` is the point `GAFFER_CRASH_AT` names.
pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(ENV).ok()).as_deref() != Some(name) {
        return;
    }
    eprintln!("gaffer: {ENV}={name}: killing this process (SIGKILL)");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    // `kill` missing: die without unwinding all the same.
    std::process::abort();
}
