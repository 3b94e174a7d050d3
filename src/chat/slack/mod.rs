//! The Slack bot's building blocks (issue: the Slack bot). The bot is a separate process that
//! only reads and commits to the state repository. So far: verifying Events API requests
//! ([`verify`]) and the Block Kit of every message kind ([`blocks`]); the connection (Socket
//! Mode, Events API), the posting engine with its `slack.yaml` cursor, modals and actions are
//! still to come.

pub mod blocks;
pub mod verify;
