//! What the phone side of the state needs: people's messages to a builder
//! (`messages/<id>.yaml`), who is pushed when a task needs them (`notify:`) and where a
//! question is posted (`questions.thread`).

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::yes;

/// `notify:` in `gaffer.yaml`: pushes to people when a task needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyPolicy {
    /// Slack user ids mentioned (pushed) with each notice; empty: `authors.slack_users`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mention: Vec<String>,
    /// Outside business hours a notice waits for the next business morning, unless its
    /// deadline comes sooner (default `true`).
    #[serde(default = "yes")]
    pub hold_outside_hours: bool,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        Self {
            mention: Vec::new(),
            hold_outside_hours: true,
        }
    }
}

/// Where a question is posted in Slack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionThread {
    /// In the task's thread.
    Task,
    /// In a thread of its own in the project's channel, linked from the task's thread.
    Own,
    /// In the task's thread when it is about the work the thread shows (the builder reported
    /// work shortly before asking); in its own thread when it is not, when it is a
    /// permission request, or when the task's thread is long.
    #[default]
    Auto,
}

/// `messages/<id>.yaml`: something a person says to the task's builder (a reply in the
/// task's Slack thread, or `gaffer say`). The reconciler delivers it to the builder's
/// session exactly once, when the builder runs; like an answer, it counts only from an
/// allowed person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    /// What they say (at most 20,000 characters).
    pub text: String,
    /// Who says it: an email or a Slack user id (checked against the commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When it was said; messages reach the builder in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub at: Option<Timestamp>,
}

/// Why a task in `phase` takes no messages, or `None` when it does (a builder that is not
/// running now gets them when it runs again).
pub fn refuses_messages(phase: crate::state::status::Phase) -> Option<String> {
    use crate::state::status::Phase;
    match phase {
        Phase::Promoted => Some("the task is Promoted: its work is merged and its builder is done".into()),
        Phase::Cancelled => Some("the task is Cancelled: nobody works on it any more".into()),
        Phase::Failed => Some(
            "the task Failed: say `retry` first (or raise retry: in task.yaml), then talk to its builder".into(),
        ),
        Phase::BuildingStories => Some(
            "the task's stories are being built, each by its own builder: write in a story's thread".into(),
        ),
        _ => None,
    }
}

/// The longest message a person can send a builder.
pub const MESSAGE_MAX_CHARS: usize = 20_000;

impl MessageSpec {
    /// Why the message cannot be delivered as written, or `None`.
    pub fn problem(&self) -> Option<String> {
        if self.text.trim().is_empty() {
            Some("a message needs a non-empty `text`".into())
        } else if self.text.chars().count() > MESSAGE_MAX_CHARS {
            Some(format!(
                "a message's `text` is at most {MESSAGE_MAX_CHARS} characters"
            ))
        } else {
            None
        }
    }
}
