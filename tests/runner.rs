//! All integration tests, compiled into one binary (`autotests = false`).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
mod test_cli;
mod test_connectors;
mod test_e2e;
mod test_gc;
mod test_github;
mod test_host;
pub(crate) mod test_lab;
mod test_lab_kubelet;
mod test_lease;
pub(crate) mod test_manifests;
pub(crate) mod test_opencode;
pub(crate) mod test_phone;
mod test_planning;
mod test_pods;
mod test_questions;
mod test_reconcile;
mod test_sandbox;
mod test_schema;
mod test_server;
mod test_sessions;
mod test_slack;
pub(crate) mod test_slack_bot;
mod test_store;
mod test_usage;
mod test_validate;
mod test_week;
