//! gaffer: a GitOps reconciler that runs AI coding builders for one developer across many
//! projects. Git commits are the API: a state repository of YAML files is the single source
//! of truth, the reconciler turns commits into actions and writes results back as commits.
//!
//! This crate is the library; `main.rs` only hands the command line to [`cli::run`].

pub mod agent;
pub mod chat;
pub mod cli;
pub mod crash;
pub mod forge;
pub mod fsutil;
pub mod git;
pub mod hours;
pub mod lab;
pub mod names;
pub mod reconcile;
pub mod schema;
pub mod server;
pub mod state;
pub mod store;
pub mod validate;
pub mod workspace;
