//! The state repository's files as Rust types.
//!
//! [`spec`] holds what people and the bot write, [`status`] what the reconciler and the bot
//! record, [`path`] maps repository paths to typed keys and owners, and [`yaml`] is the only
//! module that parses YAML.

pub mod accept;
pub mod doc;
pub mod effects;
pub mod epics;
pub mod path;
pub mod planning;
pub mod snapshot;
pub mod spec;
pub mod status;
pub mod yaml;

pub use path::{ObjectKey, StatePath, Writer};
