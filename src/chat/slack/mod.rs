//! The Slack bot's building blocks (issue: the Slack bot). The bot is a separate process that
//! only reads and commits to the state repository. So far: verifying Events API requests
//! ([`verify`]), the Block Kit of every message kind ([`blocks`]) and the Web API calls through
//! slack-morphism ([`api`]: `auth.test`, `chat.postMessage`, `chat.update`, project channels found or created and
//! joined; tested against a
//! fake Slack). The process, Socket Mode, channels and threads, the posting engine with its
//! `slack.yaml` cursor, modals and actions are still to come.

pub mod api;
pub mod blocks;
pub mod verify;
