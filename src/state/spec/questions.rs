//! The question policy: `questions:` in `gaffer.yaml`, overridable per project and task —
//! how long a question waits, what its deadline decides, whether the builder goes on, and
//! where Slack posts it (`thread`, [`QuestionThread`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::QuestionThread;
use crate::hours::HumanDuration;

/// What happens while a question waits for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionPolicy {
    /// Business-hours time after which the recommended option is applied.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// What is decided at the deadline.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Whether the builder goes on at once with the recommended option.
    #[serde(default, rename = "continue")]
    pub continue_: ContinuePolicy,
    /// Where the Slack bot posts a question: in the task's thread, in a thread of its own
    /// (linked from the task's), or `auto` (docs/slack.md has the rule).
    #[serde(default)]
    pub thread: QuestionThread,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(jiff::SignedDuration::from_hours(2))
}

impl Default for QuestionPolicy {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            on_timeout: OnTimeout::default(),
            continue_: ContinuePolicy::default(),
            thread: QuestionThread::default(),
        }
    }
}

/// Overrides of the question policy for one project or task; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionOverrides {
    /// Business-hours timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// What is decided at the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    /// Whether the builder goes on at once.
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<ContinuePolicy>,
    /// Where the Slack bot posts questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<QuestionThread>,
}

/// The decision applied when a question's deadline passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// Confirm the recommended option (`decided_by: timeout-default`).
    #[default]
    Recommended,
    /// Keep waiting for a person.
    Wait,
}

/// Whether a builder waits for an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ContinuePolicy {
    /// Go on at once with the recommended option on a provisional branch.
    #[default]
    Immediately,
    /// Wait for an answer or the deadline.
    AtDeadline,
}
