//! The Slack bot, `gaffer slack`: a separate process that only reads and commits to the
//! state repository.
//!
//! - [`bot`]: start-up (`auth.test`, the state repository) and the process's loops;
//! - [`post`]: each task's thread follows its status commits, every post exactly once
//!   (`slack.yaml` plus keys read back from the thread after a crash);
//! - [`actions`]: `/opencode start|status`, button clicks and modal submissions, committed
//!   for the Slack user (only those in `authors.slack_users`);
//! - [`socket`] (Socket Mode, the default) and [`http`] (the Events API, signature-checked
//!   by [`verify`]) deliver Slack's payloads to [`actions`];
//! - [`blocks`]: the Block Kit of every message; [`api`]: the Web API via slack-morphism.

pub mod actions;
pub mod api;
pub mod blocks;
pub mod bot;
pub mod http;
pub mod post;
pub mod socket;
pub mod verify;
