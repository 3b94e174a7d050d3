//! The builder's work in git: checkpoints, the heads status records, provisional branches,
//! and stopping the builder. All of it goes through the workspace seam
//! ([`crate::workspace::Workspace`]), off the async threads.

use std::collections::BTreeMap;

use super::{Plan, View, blocking};
use crate::names::{Qid, RepoName};
use crate::reconcile::{Context, ReconcileError};

/// Stops the task's session, if it has one (a session already gone is fine).
pub async fn stop_agent(ctx: &Context, plan: &Plan) -> Result<(), ReconcileError> {
    if let Some(session) = plan.session() {
        match plan.agent(ctx)?.stop(&plan.t, &session).await {
            Ok(()) | Err(crate::agent::AgentError::NoSession(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Records each worktree's actual head. A checkpoint made just before a crash is not
/// reported again when its step is replayed, so status must read the heads, not remember them.
pub async fn sync_heads(ctx: &Context, view: &View, plan: &mut Plan) -> Result<(), ReconcileError> {
    let ws = ctx.workspaces.clone();
    let (t, p) = (view.t.clone(), view.project.clone());
    let heads = blocking(move || ws.heads(&t, &p)).await?;
    for (repo, head) in heads {
        if let Some(rs) = plan.status.repos.get_mut(&repo) {
            rs.head_commit = Some(head);
        }
    }
    Ok(())
}

/// Commits the worktrees' changes and records every repo's head; returns the new commits
/// per repo.
///
/// Every head is recorded, not only the new commits: a step replayed after its status write
/// was lost finds the worktrees already committed, and the heads in the status it starts
/// from may be older work (the provisional work of a question answered differently since).
pub async fn checkpoint(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    message: &str,
) -> Result<BTreeMap<RepoName, String>, ReconcileError> {
    let ws = ctx.workspaces.clone();
    let (t, p, m) = (view.t.clone(), view.project.clone(), message.to_string());
    let commits = blocking(move || ws.checkpoint(&t, &p, &m)).await?;
    sync_heads(ctx, view, plan).await?;
    Ok(commits)
}

/// Where provisional work for a question starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchedOff {
    /// The provisional branch, `gaffer/<task>/<qid>`.
    pub branch: String,
    /// The branch the worktrees were on.
    pub parent: String,
    /// Each repo's commit at the question point.
    pub point: BTreeMap<RepoName, String>,
}

/// Starts provisional work for `qid`: its branch, the parent branch and the question point.
pub async fn branch_off(
    ctx: &Context,
    view: &View,
    qid: &Qid,
) -> Result<BranchedOff, ReconcileError> {
    let branch = view.t.provisional_branch(qid);
    let ws = ctx.workspaces.clone();
    let (t, p, b) = (view.t.clone(), view.project.clone(), branch.clone());
    let (parent, point) = blocking(move || ws.branch_off(&t, &p, &b)).await?;
    Ok(BranchedOff {
        branch,
        parent,
        point,
    })
}
