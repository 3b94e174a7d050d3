//! Workspaces: where a project's builder works.
//!
//! One bare mirror clone per repo URL (`<builders>/.mirrors/`), and one worktree per project
//! repo at `<builders>/{category}-{project}/repos/<repo>` on branch `gaffer/<task>`, started
//! from the repo's `base`. Everything is find-or-create, so preparing twice (after a crash)
//! changes nothing. `workspace.init: command` runs the project's own command instead,
//! rendered from validated names and run as an argument vector, never through a shell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

pub mod bmad;
mod command;
pub mod gc;
mod hosted;
pub mod remote;
pub use command::render_command;
pub use hosted::Hosted;

use crate::git::{Git, GitError};
use crate::names::{ProjectRef, RepoName, TaskRef};
use crate::state::spec::{ProjectSpec, RepoSpec, WorkspaceInit};
use crate::state::status::RepoStatus;

/// Errors while preparing or checkpointing a workspace.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The init command failed or could not be rendered.
    #[error("workspace init command: {0}")]
    Init(String),
    /// A provisional branch is not where it should be.
    #[error("provisional branch: {0}")]
    Branch(String),
    /// A builder's workspace elsewhere (its pod's sidecar) failed or could not be reached.
    #[error("{0}")]
    Remote(String),
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Git locks older than this were left by a crashed process (see
/// [`crate::git::remove_stale_locks`]).
const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(2);

/// The builders root and the operations on it.
#[derive(Debug, Clone)]
pub struct Workspaces {
    root: PathBuf,
    /// One lock per mirror: a project's builder warmed up while its task prepares (or two
    /// tasks of one project) fetch into the same mirror, and git's own ref locks would fail
    /// one of them.
    mirrors: Arc<Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>>>,
}

/// The identity of gaffer's checkpoint commits.
fn as_gaffer(git: Git) -> Git {
    git.with_env("GIT_AUTHOR_NAME", "gaffer")
        .with_env("GIT_AUTHOR_EMAIL", "gaffer@localhost")
        .with_env("GIT_COMMITTER_NAME", "gaffer")
        .with_env("GIT_COMMITTER_EMAIL", "gaffer@localhost")
}

impl Workspaces {
    /// Workspaces under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            mirrors: Arc::default(),
        }
    }

    /// The builders root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/{category}-{project}`.
    pub fn project_dir(&self, project: &ProjectRef) -> PathBuf {
        self.root.join(project.builder_name())
    }

    /// `<root>/{category}-{project}/repos/<repo>`.
    pub fn repo_dir(&self, project: &ProjectRef, repo: &RepoName) -> PathBuf {
        self.project_dir(project).join("repos").join(repo.as_str())
    }

    /// The mirror clone of `url`.
    pub fn mirror_dir(&self, url: &str) -> PathBuf {
        let digest = hex::encode(sha2::Sha256::digest(url.as_bytes()));
        self.root
            .join(".mirrors")
            .join(format!("{}.git", &digest[..16]))
    }

    /// Fetches (or first clones) the mirror of `repo` and returns it.
    pub fn mirror(&self, repo: &RepoSpec) -> Result<PathBuf, WorkspaceError> {
        let dir = self.mirror_dir(&repo.url);
        let lock = {
            let mut locks = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(dir.clone()).or_default().clone()
        };
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !dir.join("HEAD").is_file() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            Git::new(&dir).run(["init", "--quiet", "--bare"])?;
        }
        // Each step is checked on its own: a crash between them (found by the kill -9 test)
        // left a mirror without its remote, which every later fetch failed on.
        match Git::new(&dir).run(["config", "--get", "remote.origin.url"]) {
            Ok(url) if url == repo.url => {}
            Ok(_) => {
                Git::new(&dir).run(["remote", "set-url", "origin", repo.url.as_str()])?;
            }
            Err(_) => {
                Git::new(&dir).run(["remote", "add", "origin", repo.url.as_str()])?;
            }
        }
        Git::new(&dir).run([
            "config",
            "remote.origin.fetch",
            "+refs/heads/*:refs/remotes/origin/*",
        ])?;
        crate::git::remove_stale_locks(&dir, STALE_LOCK);
        Git::new(&dir).run(["fetch", "--quiet", "--no-tags", "--prune", "origin"])?;
        Ok(dir)
    }

    /// Makes sure every repo of the project has its worktree on `gaffer/<task>`
    /// (created from `base` the first time) and returns what each repo is at.
    pub fn prepare(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, RepoStatus>, WorkspaceError> {
        if project.workspace.init == WorkspaceInit::Command {
            return self.prepare_by_command(task, project);
        }
        let mut out = BTreeMap::new();
        let branch = task.branch();
        for repo in &project.repos {
            let mirror = self.mirror(repo)?;
            let dir = self.repo_dir(&task.project, &repo.name.value);
            let base_ref = format!("refs/remotes/origin/{}", repo.base);
            let base_commit = Git::new(&mirror).run(["rev-parse", "--verify", &base_ref])?;
            if !dir.join(".git").exists() {
                if dir.exists() {
                    // Left half-made by a crash during `git worktree add`.
                    std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
                }
                std::fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(io(&dir))?;
                // A worktree directory left half-made by a crash is pruned first.
                Git::new(&mirror).run(["worktree", "prune"])?;
                let d = dir.to_string_lossy().into_owned();
                if branch_exists(&mirror, &branch) {
                    Git::new(&mirror).run(["worktree", "add", "--quiet", &d, &branch])?;
                } else {
                    Git::new(&mirror).run([
                        "worktree",
                        "add",
                        "--quiet",
                        "-b",
                        &branch,
                        &d,
                        &base_commit,
                    ])?;
                }
            }
            out.insert(
                repo.name.value.clone(),
                on_task_branch(&dir, &branch, base_commit)?,
            );
        }
        Ok(out)
    }

    /// Commits everything in the task's worktrees (author "gaffer"), returning the new
    /// head per repo that changed.
    pub fn checkpoint(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        message: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let mut out = BTreeMap::new();
        for repo in &project.repos {
            let dir = self.repo_dir(&task.project, &repo.name.value);
            if let Some(head) = checkpoint_dir(&dir, message)? {
                out.insert(repo.name.value.clone(), head);
            }
        }
        Ok(out)
    }

    /// Files that differ from `base` (per repo, the commit the task started from), including
    /// uncommitted work.
    pub fn changed_files(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        bases: &BTreeMap<RepoName, String>,
    ) -> Result<Vec<String>, WorkspaceError> {
        let mut out = Vec::new();
        for repo in &project.repos {
            let Some(base) = bases.get(&repo.name.value) else {
                continue;
            };
            let dir = self.repo_dir(&task.project, &repo.name.value);
            let names = Git::new(&dir).run(["diff", "--name-only", base.as_str(), "--"])?;
            let untracked = Git::new(&dir).run(["ls-files", "--others", "--exclude-standard"])?;
            for f in names.lines().chain(untracked.lines()) {
                if !f.is_empty() {
                    out.push(format!("{}/{f}", repo.name.value));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Starts provisional work for a question: commits what is in the worktrees, creates
    /// `branch` there and moves each worktree onto it (no file changes). Returns the branch the
    /// worktrees were on (the question's parent) and each repo's commit at the question point.
    /// Repeating it after a crash finds the same parent (git's record of the last switch).
    pub fn branch_off(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        branch: &str,
    ) -> Result<(String, BTreeMap<RepoName, String>), WorkspaceError> {
        let mut parent = task.branch();
        let mut points = BTreeMap::new();
        for repo in &project.repos {
            let dir = self.repo_dir(&task.project, &repo.name.value);
            checkpoint_dir(&dir, &format!("before {branch}"))?;
            let g = as_gaffer(Git::new(&dir));
            let current = current_branch(&dir)?;
            let (from, point) = if current == branch {
                // Done before a crash: the branch we came from is the one switched away from.
                let from = g.run(["rev-parse", "--abbrev-ref", "@{-1}"])?;
                let point = g.run(["rev-parse", &format!("refs/heads/{from}")])?;
                (from, point)
            } else if branch_exists(&dir, branch) {
                // Made before a crash, and the work went on where it was: the question point
                // is where the branch was made; the branch takes the work along.
                let point = g.run(["rev-parse", &format!("refs/heads/{branch}")])?;
                if g.run(["merge-base", "--is-ancestor", &point, "HEAD"])
                    .is_err()
                {
                    return Err(WorkspaceError::Branch(format!(
                        "{}: {branch} exists and is not part of {current}",
                        repo.name.value
                    )));
                }
                g.run(["branch", "--force", branch, "HEAD"])?;
                g.run(["switch", "--quiet", branch])?;
                (current, point)
            } else {
                g.run(["branch", branch, "HEAD"])?;
                g.run(["switch", "--quiet", branch])?;
                let point = g.run(["rev-parse", "HEAD"])?;
                (current, point)
            };
            points.insert(repo.name.value.clone(), point);
            parent = from;
        }
        Ok((parent, points))
    }

    /// Confirms a provisional branch: fast-forwards `parent` to it and, when a worktree is on
    /// `branch`, moves it back to `parent` (same commit, no file changes). Returns the new tip
    /// of `parent` per repo.
    pub fn confirm(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let mut out = BTreeMap::new();
        for repo in &project.repos {
            let dir = self.repo_dir(&task.project, &repo.name.value);
            let g = as_gaffer(Git::new(&dir));
            let current = current_branch(&dir)?;
            if current == branch {
                checkpoint_dir(&dir, &format!("confirming {branch}"))?;
            }
            let tip = g.run(["rev-parse", &format!("refs/heads/{branch}")])?;
            let base = g.run(["rev-parse", &format!("refs/heads/{parent}")])?;
            if base != tip {
                if g.run(["merge-base", "--is-ancestor", &base, &tip]).is_err() {
                    return Err(WorkspaceError::Branch(format!(
                        "{}: {parent} moved away from {branch}; not fast-forwarding",
                        repo.name.value
                    )));
                }
                if current == parent {
                    g.run(["merge", "--quiet", "--ff-only", &tip])?;
                } else {
                    g.run(["branch", "--force", parent, &tip])?;
                }
            }
            if current == branch {
                g.run(["switch", "--quiet", parent])?;
            }
            out.insert(repo.name.value.clone(), tip);
        }
        Ok(out)
    }

    /// Sets provisional work aside after a different answer: commits what is in the
    /// worktrees, keeps everything since the question on `branch` (moving `branch` forward when
    /// the work went on on `parent` after a confirmation), and puts the worktrees back on
    /// `parent` at the question point — the files really change back. Returns what was set
    /// aside per repo (the commit holding the work).
    pub fn set_aside(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
        points: &BTreeMap<RepoName, String>,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let mut out = BTreeMap::new();
        for repo in &project.repos {
            let Some(point) = points.get(&repo.name.value) else {
                continue;
            };
            let dir = self.repo_dir(&task.project, &repo.name.value);
            let g = as_gaffer(Git::new(&dir));
            checkpoint_dir(&dir, &format!("set aside with {branch}"))?;
            let head = g.run(["rev-parse", "HEAD"])?;
            let current = current_branch(&dir)?;
            if &head == point && current == parent {
                // Already done (a replay after a crash).
                let kept = g.run(["rev-parse", &format!("refs/heads/{branch}")])?;
                out.insert(repo.name.value.clone(), kept);
                continue;
            }
            if current == parent {
                // Confirmed at the deadline and worked on since: all of it goes aside.
                g.run(["branch", "--force", branch, &head])?;
            }
            crate::crash::point("override:set-aside");
            g.run([
                "switch",
                "--quiet",
                "--discard-changes",
                "-C",
                parent,
                point.as_str(),
            ])?;
            crate::crash::point("override:reset");
            out.insert(repo.name.value.clone(), head);
        }
        Ok(out)
    }

    /// The current head of each repo's worktree.
    pub fn heads(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let mut out = BTreeMap::new();
        for repo in &project.repos {
            let dir = self.repo_dir(&task.project, &repo.name.value);
            out.insert(
                repo.name.value.clone(),
                Git::new(&dir).run(["rev-parse", "HEAD"])?,
            );
        }
        Ok(out)
    }
}

/// The branch a worktree is on.
fn current_branch(dir: &Path) -> Result<String, WorkspaceError> {
    Ok(Git::new(dir).run(["symbolic-ref", "--quiet", "--short", "HEAD"])?)
}

fn branch_exists(dir: &Path, branch: &str) -> bool {
    Git::new(dir)
        .run([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .is_ok()
}

/// Puts the worktree at `dir` on `branch` — the branch as it is, or made from `base_commit`
/// when it does not exist yet — checkpointing the work of the branch it leaves (one task at
/// a time per project), and says where the repo now is.
fn on_task_branch(
    dir: &Path,
    branch: &str,
    base_commit: String,
) -> Result<RepoStatus, WorkspaceError> {
    if current_branch(dir).ok().as_deref() != Some(branch) {
        checkpoint_dir(dir, "work in progress before switching tasks")?;
        if branch_exists(dir, branch) {
            as_gaffer(Git::new(dir)).run(["switch", "--quiet", branch])?;
        } else {
            as_gaffer(Git::new(dir)).run(["switch", "--quiet", "-c", branch, &base_commit])?;
        }
    }
    Ok(RepoStatus {
        branch: branch.to_string(),
        base_commit: Some(base_commit),
        head_commit: Some(Git::new(dir).run(["rev-parse", "HEAD"])?),
        change: None,
    })
}

/// Commits all changes in `dir`; None when there was nothing to commit.
pub fn checkpoint_dir(dir: &Path, message: &str) -> Result<Option<String>, WorkspaceError> {
    let g = as_gaffer(Git::new(dir));
    for which in ["--absolute-git-dir", "--git-common-dir"] {
        if let Ok(git_dir) = Git::new(dir).run(["rev-parse", which]) {
            crate::git::remove_stale_locks(&dir.join(git_dir), STALE_LOCK);
        }
    }
    let status = g.run(["status", "--porcelain", "--untracked-files=all"])?;
    if status.trim().is_empty() {
        return Ok(None);
    }
    g.run(["add", "--all"])?;
    g.run([
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        &format!("gaffer: checkpoint: {message}"),
    ])?;
    Ok(Some(g.run(["rev-parse", "HEAD"])?))
}

/// Where a task's git worktrees live and how its builder sees them. The task lifecycle uses
/// only this, so a builder host that does not share gaffer's disk (a pod with its workspace
/// on a volume) brings its own implementation and no phase changes. [`Workspaces`] is the
/// local one: worktrees on gaffer's own disk, seen by the builder at the same paths.
pub trait Workspace: Send + Sync + std::fmt::Debug {
    /// The project's workspace as gaffer reaches it (renders, lab tests).
    fn local_dir(&self, project: &ProjectRef, spec: &ProjectSpec) -> PathBuf;
    /// The project's workspace as the builder sees it (its prompt and session).
    fn builder_dir(&self, project: &ProjectRef, spec: &ProjectSpec) -> PathBuf {
        self.local_dir(project, spec)
    }
    /// The mirror clone of `url` that pull requests are pushed from.
    fn mirror_dir(&self, url: &str) -> PathBuf;
    /// The git dir holding a task's branch of `repo`, that pushes go from: gaffer's mirror,
    /// or with `init: command` whatever repository the project's command made the worktree of.
    fn repo_git_dir(&self, _p: &ProjectRef, _spec: &ProjectSpec, repo: &RepoSpec) -> PathBuf {
        self.mirror_dir(&repo.url)
    }
    /// Directories besides its workspace that the builder writes to (the git dirs its
    /// worktrees point into), for its sandbox.
    fn builder_dirs(&self, _p: &ProjectRef, _spec: &ProjectSpec) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Readies what a project's builder is started with ahead of its first task (the git
    /// dirs its sandbox binds); `Ok(false)` when that cannot be known before a task (the
    /// project's own command has not made the workspace yet).
    fn warm(&self, _p: &ProjectRef, _spec: &ProjectSpec) -> Result<bool, WorkspaceError> {
        Ok(true)
    }
    /// See [`Workspaces::prepare`].
    fn prepare(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, RepoStatus>, WorkspaceError>;
    /// See [`Workspaces::checkpoint`].
    fn checkpoint(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        message: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError>;
    /// See [`Workspaces::changed_files`].
    fn changed_files(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        bases: &BTreeMap<RepoName, String>,
    ) -> Result<Vec<String>, WorkspaceError>;
    /// See [`Workspaces::branch_off`].
    fn branch_off(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        branch: &str,
    ) -> Result<(String, BTreeMap<RepoName, String>), WorkspaceError>;
    /// See [`Workspaces::confirm`].
    fn confirm(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError>;
    /// See [`Workspaces::set_aside`].
    fn set_aside(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
        points: &BTreeMap<RepoName, String>,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError>;
    /// See [`Workspaces::heads`].
    fn heads(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError>;
    /// Brings [`Workspace::local_dir`] up to date with the builder's worktrees (their files,
    /// for a lab render or the lab tests) and returns it; nothing to do when gaffer works
    /// in them directly.
    fn sync_local(&self, task: &TaskRef, spec: &ProjectSpec) -> Result<PathBuf, WorkspaceError> {
        Ok(self.local_dir(&task.project, spec))
    }
    /// Makes the task's branches available in [`Workspace::repo_git_dir`], to be pushed from
    /// there; nothing to do when that is where the builder commits.
    fn export(&self, _task: &TaskRef, _spec: &ProjectSpec) -> Result<(), WorkspaceError> {
        Ok(())
    }
}

impl Workspace for Workspaces {
    fn local_dir(&self, project: &ProjectRef, _spec: &ProjectSpec) -> PathBuf {
        self.project_dir(project)
    }
    fn mirror_dir(&self, url: &str) -> PathBuf {
        Workspaces::mirror_dir(self, url)
    }
    fn repo_git_dir(&self, p: &ProjectRef, spec: &ProjectSpec, repo: &RepoSpec) -> PathBuf {
        if spec.workspace.init == WorkspaceInit::Command {
            let dir = self.repo_dir(p, &repo.name.value);
            if let Ok(common) =
                Git::new(&dir).run(["rev-parse", "--path-format=absolute", "--git-common-dir"])
            {
                return PathBuf::from(common);
            }
        }
        Workspaces::mirror_dir(self, &repo.url)
    }
    fn builder_dirs(&self, p: &ProjectRef, spec: &ProjectSpec) -> Vec<PathBuf> {
        // A worktree's `.git` names its git dir inside the mirror: commits write there.
        let mut dirs: Vec<PathBuf> = spec
            .repos
            .iter()
            .map(|r| self.repo_git_dir(p, spec, r))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
    fn warm(&self, p: &ProjectRef, spec: &ProjectSpec) -> Result<bool, WorkspaceError> {
        if spec.workspace.init == WorkspaceInit::Command {
            // The git dirs are whatever the command makes; known once it has run.
            return Ok(spec
                .repos
                .iter()
                .all(|r| self.repo_dir(p, &r.name.value).join(".git").exists()));
        }
        std::fs::create_dir_all(self.project_dir(p)).map_err(io(&self.project_dir(p)))?;
        for repo in &spec.repos {
            self.mirror(repo)?;
        }
        Ok(true)
    }
    fn prepare(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, RepoStatus>, WorkspaceError> {
        Workspaces::prepare(self, task, project)
    }
    fn checkpoint(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        message: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        Workspaces::checkpoint(self, task, project, message)
    }
    fn changed_files(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        bases: &BTreeMap<RepoName, String>,
    ) -> Result<Vec<String>, WorkspaceError> {
        Workspaces::changed_files(self, task, project, bases)
    }
    fn branch_off(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        branch: &str,
    ) -> Result<(String, BTreeMap<RepoName, String>), WorkspaceError> {
        Workspaces::branch_off(self, task, project, branch)
    }
    fn confirm(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        Workspaces::confirm(self, task, project, parent, branch)
    }
    fn set_aside(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
        points: &BTreeMap<RepoName, String>,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        Workspaces::set_aside(self, task, project, parent, branch, points)
    }
    fn heads(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        Workspaces::heads(self, task, project)
    }
}
