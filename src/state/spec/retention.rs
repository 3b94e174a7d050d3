//! `retention:` in gaffer.yaml: how long what finished tasks leave on gaffer's disk is kept.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hours::HumanDuration;

/// How long what finished tasks leave behind is kept (docs/cleanup.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// A task Promoted or Cancelled this long ago loses its local task and provisional
    /// branches (those whose work is on a remote, merged or set aside; never others), and a
    /// project all of whose tasks are such loses its worktrees (default `7d`). Lab namespaces
    /// follow `gaffer lab cleanup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktrees: Option<HumanDuration>,
}

impl Retention {
    /// How long a finished task's worktrees and branches are kept.
    pub fn worktrees(&self) -> jiff::SignedDuration {
        self.worktrees
            .map_or(jiff::SignedDuration::from_hours(7 * 24), HumanDuration::get)
    }
}
