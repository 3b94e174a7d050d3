//! The Slack bot, `gaffer slack`: a separate process that only reads and commits to the
//! state repository.
//!
//! - [`bot`]: the [`bot::Bot`] shared by everything below, and its start-up (`auth.test`,
//!   the state repository); it depends on none of the modules below;
//! - [`serve`]: the process's loops ([`run`]), wiring the modules below to one bot;
//! - [`post`]: each task's thread follows its status commits, every post exactly once
//!   (`slack.yaml` plus keys read back from the thread after a crash);
//! - [`actions`]: `/opencode start|status`, button clicks and modal submissions, committed
//!   for the Slack user (only those in `authors.slack_users`);
//! - [`socket`] (Socket Mode, the default) and [`http`] (the Events API, signature-checked
//!   by [`verify`]) deliver Slack's payloads to [`actions`];
//! - [`blocks`]: the Block Kit of every message and the keys in their `block_id`s; [`api`]:
//!   the Web API via slack-morphism.

pub mod actions;
pub mod api;
pub mod blocks;
pub mod bot;
pub mod home;
pub mod http;
pub mod planning;
pub mod post;
pub mod replies;
pub mod serve;
pub mod socket;
pub mod verify;

pub use serve::run;
