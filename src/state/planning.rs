//! The planning stage's files: the `plan` policy (in `gaffer.yaml`, `project.yaml` and
//! `task.yaml`), the reconciler-owned `plan.yaml`, and the names of the plan's documents
//! under `tasks/<t>/plan/`.
//!
//! A task with a plan mode other than `none` is planned by the real BMAD skills in its
//! builder's workspace before it is built; the documents are copied into the state
//! repository after every planning turn and approved there (docs/planning.md).

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a task is planned before it is built.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum PlanMode {
    /// No plan: the task goes straight to the builder. What a state repository without a
    /// `plan:` setting gets, so an upgrade never stops tasks already under way.
    #[default]
    None,
    /// BMAD's small-work flow: one spec (`bmad-spec`), approved, then built.
    Quick,
    /// PRD → architecture → epics and stories; each story becomes a child task.
    Full,
    /// A contested decision discussed by several BMAD personas (`bmad-party-mode`).
    Party,
}

impl PlanMode {
    /// The mode's name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanMode::None => "none",
            PlanMode::Quick => "quick",
            PlanMode::Full => "full",
            PlanMode::Party => "party",
        }
    }
}

impl std::fmt::Display for PlanMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `plan:` in `gaffer.yaml`: how tasks are planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPolicy {
    /// `none`, `quick`, `full` or `party`. `gaffer init` writes `quick`, what a BMAD user
    /// expects for a task-sized piece of work (docs/planning.md says why).
    #[serde(default)]
    pub mode: PlanMode,
    /// More open questions than this in one planning turn go into one annotation document
    /// instead of a thread each.
    #[serde(default = "default_document_over")]
    pub document_over: u32,
}

fn default_document_over() -> u32 {
    3
}

impl Default for PlanPolicy {
    fn default() -> Self {
        Self {
            mode: PlanMode::default(),
            document_over: default_document_over(),
        }
    }
}

/// `plan:` in `project.yaml` or `task.yaml`: overrides; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanOverrides {
    /// `none`, `quick`, `full` or `party`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PlanMode>,
    /// Open questions above this go into one annotation document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_over: Option<u32>,
}

impl PlanPolicy {
    /// The policy for one task: the task's overrides over the project's over these.
    pub fn resolve(&self, layers: &[Option<&PlanOverrides>]) -> PlanPolicy {
        let mut out = self.clone();
        for o in layers.iter().flatten() {
            if let Some(m) = o.mode {
                out.mode = m;
            }
            if let Some(n) = o.document_over {
                out.document_over = n;
            }
        }
        out
    }
}

/// Where a plan stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PlanState {
    /// A planning turn is under way (or about to start).
    #[default]
    Drafting,
    /// The current version waits for a person's approval.
    AwaitingApproval,
    /// A person approved the current version; the build uses it.
    Approved,
}

/// One document of the plan, as the reconciler last committed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDocument {
    /// Its path under the task's `plan/` folder.
    pub path: String,
    /// The SHA-256 of its content, hex.
    pub sha256: String,
}

/// A person's decision on one version of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDecision {
    /// The plan version decided.
    pub version: u32,
    /// Who decided (as the approval file names them, checked against its commit).
    pub by: String,
    /// The approval file.
    pub file: String,
    /// When the reconciler took it.
    #[schemars(with = "String")]
    pub at: Timestamp,
}

/// `plan.yaml` of a task: the plan's documents, step, version and state. Reconciler-owned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanStatus {
    /// The mode the plan is made in.
    pub mode: PlanMode,
    /// The BMAD step of the current turn (`spec`, `prd`, `architecture`, `epics`).
    pub step: String,
    /// Goes up by one each time a planning turn ends with new documents; an approval names
    /// the version it approves.
    pub version: u32,
    /// Where the plan stands.
    pub state: PlanState,
    /// The planner's one-line summary of its last turn.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// The documents of the current version, as committed by the reconciler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<PlanDocument>,
    /// Open questions the planner listed at the end of its turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_questions: Vec<String>,
    /// Change requests sent to the planner (approval file ids), so none is sent twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes_sent: Vec<String>,
    /// Approval files ignored (unlisted author, wrong version), said once each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// The approval of the current version, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<PlanDecision>,
    /// A change request the next planning turn starts with (taken, not yet sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PlanRequest>,
}

/// Changes a person asked for (or made to the documents), for the planner's next turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The approval file that asked, or `edit-<digest>` for edited documents.
    pub id: String,
    /// Who asked.
    pub by: String,
    /// What they asked for.
    pub text: String,
}

impl PlanStatus {
    /// Whether the documents in the state repository are the ones this status records.
    pub fn matches(&self, docs: &std::collections::BTreeMap<String, String>) -> bool {
        self.documents.len() == docs.len()
            && self
                .documents
                .iter()
                .all(|d| docs.get(&d.path).is_some_and(|c| sha256(c) == d.sha256))
    }
}

/// The SHA-256 of `text`, hex.
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Most documents a plan holds, and most bytes in one; more is refused, never truncated.
pub const MAX_DOCUMENTS: usize = 200;
/// See [`MAX_DOCUMENTS`].
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Checks a document's path under `plan/` before it becomes a path in the state repository
/// or a workspace: relative, `/`-separated, at most 8 deep, each part letters, digits, `.`,
/// `_` or `-`, never starting with `.`.
pub fn check_doc_path(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    if path.is_empty() || parts.len() > 8 || path.len() > 255 {
        return Err(format!(
            "plan document path {path:?} is empty, too long or more than 8 folders deep"
        ));
    }
    for part in parts {
        let ok = !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "plan document path {path:?}: {part:?} must be letters, digits, '.', '_' or \
                 '-' and must not start with '.'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_paths_are_checked_before_they_become_paths() {
        for ok in ["specs/spec-x/SPEC.md", "planning-artifacts/epics.md", "a"] {
            assert_eq!(check_doc_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            "a//b",
            ".memlog.md",
            "specs/.hidden",
            "a b.md",
            "a/b/c/d/e/f/g/h/i",
            "x\\y",
        ] {
            assert!(check_doc_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_apply_task_over_project_over_settings() {
        let base = PlanPolicy::default();
        let project = PlanOverrides {
            mode: Some(PlanMode::Full),
            document_over: Some(5),
        };
        let task = PlanOverrides {
            mode: Some(PlanMode::Quick),
            document_over: None,
        };
        let got = base.resolve(&[Some(&project), Some(&task)]);
        assert_eq!((got.mode, got.document_over), (PlanMode::Quick, 5));
        assert_eq!(base.resolve(&[None, None]).mode, PlanMode::None);
    }

    #[test]
    fn a_status_matches_only_the_documents_it_records() {
        let mut docs = std::collections::BTreeMap::new();
        docs.insert("SPEC.md".to_string(), "# spec\n".to_string());
        let status = PlanStatus {
            documents: vec![PlanDocument {
                path: "SPEC.md".into(),
                sha256: sha256("# spec\n"),
            }],
            ..PlanStatus::default()
        };
        assert!(status.matches(&docs));
        docs.insert("SPEC.md".into(), "# spec, edited\n".into());
        assert!(!status.matches(&docs));
        docs.insert("SPEC.md".into(), "# spec\n".into());
        docs.insert("notes.md".into(), "x".into());
        assert!(!status.matches(&docs));
    }
}
