//! Cleanup of what finished tasks leave on gaffer's disk (`gaffer gc`, and the reconciler
//! hourly): after `retention.worktrees` in `Promoted` or `Cancelled`, a task's local branches
//! (`gaffer/<task>`, `gaffer-provisional/<task>/…`) are deleted — only those whose work is
//! also on a remote, merged, or recorded as set aside; any other is kept and reported — and
//! a project whose tasks are all such loses its worktrees (whatever is uncommitted in them
//! is committed on its branch first, so that branch is then kept unless it is safe). The
//! mirrors are then garbage-collected. Lab namespaces are `gaffer lab cleanup`'s.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use super::{WorkspaceError, Workspaces, checkpoint_dir};
use crate::git::Git;
use crate::names::{ProjectRef, Qid, TaskRef};
use crate::state::effects::Applied;
use crate::state::spec::{ProjectSpec, WorkspaceInit};
use crate::state::status::{Phase, TaskStatus};

/// One project as the state repository has it.
#[derive(Debug, Clone)]
pub struct GcProject {
    /// The project.
    pub project: ProjectRef,
    /// Its spec.
    pub spec: ProjectSpec,
    /// Its tasks and their statuses.
    pub tasks: Vec<(TaskRef, Option<TaskStatus>)>,
}

/// What a cleanup removed (or, dry, would remove) and what it kept on purpose.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct GcReport {
    /// Worktrees removed.
    pub worktrees: Vec<String>,
    /// Branches deleted: `<mirror repo>: <branch> <commit>`.
    pub branches: Vec<String>,
    /// Branches kept, with why.
    pub kept: Vec<String>,
    /// Mirrors garbage-collected.
    pub mirrors: Vec<String>,
    /// Finished sessions whose settled history start (`<data>/opencode/tails`) was removed.
    pub sessions: Vec<String>,
    /// Repos left alone this time, with why (their remote could not be fetched).
    pub skipped: Vec<String>,
}

impl GcReport {
    /// Nothing removed and nothing kept.
    pub fn is_empty(&self) -> bool {
        self.worktrees.is_empty()
            && self.branches.is_empty()
            && self.kept.is_empty()
            && self.skipped.is_empty()
    }
}

fn finished_for(
    status: Option<&TaskStatus>,
    now: jiff::Timestamp,
    keep: jiff::SignedDuration,
) -> bool {
    status.is_some_and(|s| {
        matches!(s.phase, Phase::Promoted | Phase::Cancelled)
            && s.phase_since.is_some_and(|t| now.duration_since(t) >= keep)
    })
}

/// Cleans up after the tasks of `projects` finished at least `keep` before `now` (and their
/// sessions' files in `opencode_dir`, `<data>/opencode`); with `dry_run`, only says what it
/// would do.
pub fn collect(
    ws: &Workspaces,
    opencode_dir: Option<&std::path::Path>,
    projects: &[GcProject],
    now: jiff::Timestamp,
    keep: jiff::SignedDuration,
    dry_run: bool,
) -> Result<GcReport, WorkspaceError> {
    let mut report = GcReport::default();
    for p in projects {
        let old: Vec<&(TaskRef, Option<TaskStatus>)> = p
            .tasks
            .iter()
            .filter(|(_, s)| finished_for(s.as_ref(), now, keep))
            .collect();
        if old.is_empty() || p.spec.workspace.init == WorkspaceInit::Command {
            // A workspace made by the project's own command is the project's to clean.
            continue;
        }
        let idle = old.len() == p.tasks.len();
        for (_, status) in &old {
            let session = status
                .as_ref()
                .and_then(|s| s.agent.as_ref()?.session_id.clone());
            if let (Some(dir), Some(session)) = (opencode_dir, session)
                && !dry_run
                && crate::agent::opencode::remove_tail_file(dir, &session)
            {
                report.sessions.push(session);
            }
        }
        for repo in &p.spec.repos {
            let mirror = ws.mirror_dir(&repo.url);
            if !mirror.join("HEAD").is_file() {
                continue;
            }
            let dir = ws.repo_dir(&p.project, &repo.name.value);
            let worktree = idle && dir.join(".git").exists();
            // The old tasks' branches, as (index in `old`, branch, commit).
            let read = || -> Result<Vec<(usize, String, String)>, WorkspaceError> {
                let mut out = Vec::new();
                for (i, (task, _)) in old.iter().enumerate() {
                    for (b, c) in task_branches(&mirror, task)? {
                        out.push((i, b, c));
                    }
                }
                Ok(out)
            };
            let mut branches = read()?;
            if !worktree && branches.is_empty() {
                // Cleaned up before: nothing to fetch for.
                continue;
            }
            // What is on the remote is decided on a fresh fetch (with --prune): a branch
            // deleted there since the last one no longer counts as a copy of the work.
            if let Err(e) = ws.mirror(repo) {
                report.skipped.push(format!(
                    "{}/{}: the remote could not be fetched: {e}",
                    p.project, repo.name.value
                ));
                continue;
            }
            let mut changed = false;
            let mut leaving: Option<PathBuf> = None;
            // Dry, the uncommitted work a real run would commit keeps its branch.
            let mut dirty: Option<String> = None;
            if worktree {
                if dry_run && !Git::new(&dir).run(["status", "--porcelain"])?.is_empty() {
                    dirty = Some(super::current_branch(&dir)?);
                }
                if !dry_run {
                    // Never lose work: what is uncommitted goes on the branch it is on.
                    if checkpoint_dir(&dir, "left in the worktree at cleanup")?.is_some() {
                        // The branch the worktree is on moved: judge its new commit.
                        branches = read()?;
                    }
                    let d = dir.to_string_lossy().into_owned();
                    Git::new(&mirror).run(["worktree", "remove", "--force", d.as_str()])?;
                    changed = true;
                }
                report.worktrees.push(dir.display().to_string());
                leaving = Some(dir.clone());
            }
            let checked_out = checked_out(&mirror, leaving.as_deref())?;
            for (i, branch, commit) in branches {
                let (task, status) = old[i];
                let label = format!("{}/{}: {branch}", p.project, repo.name.value);
                let short = &commit[..commit.len().min(12)];
                if checked_out.contains(&branch) {
                    report
                        .kept
                        .push(format!("{label} ({short}): checked out in a worktree"));
                    continue;
                }
                if dirty.as_ref() == Some(&branch) {
                    report.kept.push(format!(
                        "{label} ({short}): its worktree has uncommitted work, which goes on it"
                    ));
                    continue;
                }
                let Some(why) = safe(
                    &mirror,
                    task,
                    status.as_ref(),
                    &repo.name.value,
                    &branch,
                    &commit,
                )?
                else {
                    report.kept.push(format!(
                        "{label} ({short}): its work is on no remote, not merged and not set aside"
                    ));
                    continue;
                };
                if !dry_run {
                    Git::new(&mirror).run(["branch", "--delete", "--force", branch.as_str()])?;
                    changed = true;
                }
                report.branches.push(format!("{label} ({short}, {why})"));
            }
            if changed {
                Git::new(&mirror).run(["worktree", "prune"])?;
                // Objects written in the last hour stay: a fetch may be bringing them in.
                Git::new(&mirror).run(["gc", "--quiet", "--prune=1.hour.ago"])?;
                report.mirrors.push(mirror.display().to_string());
            }
        }
    }
    Ok(report)
}

/// The branches checked out in `mirror`'s worktrees, but the one at `leaving`.
fn checked_out(
    mirror: &std::path::Path,
    leaving: Option<&std::path::Path>,
) -> Result<BTreeSet<String>, WorkspaceError> {
    let list = Git::new(mirror).run(["worktree", "list", "--porcelain"])?;
    let mut out = BTreeSet::new();
    for block in list.split("\n\n") {
        let path = block.lines().find_map(|l| l.strip_prefix("worktree "));
        if leaving.is_some_and(|d| path.is_some_and(|p| std::path::Path::new(p) == d)) {
            continue;
        }
        if let Some(b) = block
            .lines()
            .find_map(|l| l.strip_prefix("branch refs/heads/"))
        {
            out.insert(b.to_string());
        }
    }
    Ok(out)
}

/// The task's local branches in `mirror` and their commits.
fn task_branches(
    mirror: &std::path::Path,
    task: &TaskRef,
) -> Result<Vec<(String, String)>, WorkspaceError> {
    let own = format!("refs/heads/{}", task.branch());
    let provisional = format!("refs/heads/gaffer-provisional/{}/", task.task);
    let list = Git::new(mirror).run([
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        own.as_str(),
        provisional.as_str(),
    ])?;
    Ok(list
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, r)| *r == own || r.starts_with(&provisional))
        .map(|(c, r)| {
            (
                r.trim_start_matches("refs/heads/").to_string(),
                c.to_string(),
            )
        })
        .collect())
}

/// Why deleting `branch` (at `commit`) loses nothing, if it does not.
fn safe(
    mirror: &std::path::Path,
    task: &TaskRef,
    status: Option<&TaskStatus>,
    repo: &crate::names::RepoName,
    branch: &str,
    commit: &str,
) -> Result<Option<&'static str>, WorkspaceError> {
    let on_remote = Git::new(mirror).run([
        "for-each-ref",
        "--count=1",
        "--format=%(refname)",
        "--contains",
        commit,
        "refs/remotes",
    ])?;
    if !on_remote.is_empty() {
        return Ok(Some("on the remote"));
    }
    let Some(status) = status else {
        return Ok(None);
    };
    // A squash or rebase merge leaves the pushed head on no branch of the remote.
    let merged = status
        .repos
        .get(repo)
        .and_then(|r| r.change.as_ref())
        .is_some_and(|c| c.state == "merged" && c.pushed.as_deref() == Some(commit));
    if branch == task.branch() && merged {
        return Ok(Some("merged"));
    }
    let set_aside = branch
        .rsplit_once('/')
        .and_then(|(_, q)| Qid::new(q).ok())
        .and_then(|q| status.effects.applied.get(&q))
        .is_some_and(|a| matches!(a, Applied::SetAside(_)));
    Ok(set_aside.then_some("set aside"))
}

/// The projects of `snapshot` whose worktrees are on gaffer's disk (not in builder pods),
/// with their tasks.
pub fn projects_of(snapshot: &crate::state::snapshot::Snapshot) -> Vec<GcProject> {
    let Some(settings) = &snapshot.settings else {
        return Vec::new();
    };
    snapshot
        .projects
        .iter()
        .filter_map(|(p, pe)| {
            let spec = pe.spec.clone()?.with_builder_defaults(settings);
            (!spec.on_pod()).then(|| GcProject {
                project: p.clone(),
                tasks: pe
                    .tasks
                    .iter()
                    .map(|(t, e)| {
                        (
                            TaskRef {
                                project: p.clone(),
                                task: t.clone(),
                            },
                            e.status.as_deref().cloned(),
                        )
                    })
                    .collect(),
                spec,
            })
        })
        .collect()
}
