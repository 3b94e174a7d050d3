//! The integration tests' fakes, included as they are: the scripted LLM, the fake Slack
//! (Web API and Socket Mode) and the real OpenCode's world.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

#[path = "../../tests/common/kube.rs"]
pub mod kube;
#[path = "../../tests/common/llm.rs"]
pub mod llm;
#[path = "../../tests/common/opencode.rs"]
pub mod opencode;
#[path = "../../tests/common/served.rs"]
pub mod served;
#[path = "../../tests/common/slack.rs"]
pub mod slack;

pub use served::Served;

/// The repository root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
