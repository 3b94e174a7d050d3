//! The Slack bot's building blocks (issue: the Slack bot). The bot is a separate process that
//! only reads and commits to the state repository. So far: verifying Events API requests
//! ([`verify`]), the Block Kit of every message kind ([`blocks`]) and the Web API calls through
//! slack-morphism ([`api`]: `auth.test`, `chat.postMessage`, `chat.update`, and project
//! channels found or created, then joined), tested against a fake Slack. Still to come: the
//! `gaffer slack` process, Socket Mode and the Events API endpoint, threads and the posting
//! engine with its `slack.yaml` cursor, modals and button actions.

pub mod api;
pub mod blocks;
pub mod verify;
