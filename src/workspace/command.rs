//! `workspace.init: command`: the project's own command makes the workspace, in the
//! builders root, instead of gaffer's mirrors and worktrees; gaffer adopts what it made.
//! The command is rendered from validated names and run as an argument vector, never
//! through a shell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::{WorkspaceError, Workspaces, io, on_task_branch};
use crate::git::Git;
use crate::names::{RepoName, TaskRef};
use crate::state::spec::ProjectSpec;
use crate::state::status::RepoStatus;

impl Workspaces {
    /// `init: command`: the project's own command makes the workspace — run in the builders
    /// root, instead of gaffer's worktrees, and again only when the command or the project's
    /// repos change — and gaffer adopts what it made.
    pub(super) fn prepare_by_command(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, RepoStatus>, WorkspaceError> {
        let run = project.workspace.run.as_deref().ok_or_else(|| {
            WorkspaceError::Init("workspace.init is command, but workspace.run is not set".into())
        })?;
        let argv = render_command(task, project, run)?;
        let marker = self.project_dir(&task.project).join(".gaffer-init");
        let digest = {
            let mut h = sha2::Sha256::new();
            h.update(run.as_bytes());
            for r in &project.repos {
                h.update(format!("\0{}\0{}\0{}", r.name.value, r.url, r.base).as_bytes());
            }
            hex::encode(h.finalize())
        };
        let made = std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == digest)
            && project.repos.iter().all(|r| {
                self.repo_dir(&task.project, &r.name.value)
                    .join(".git")
                    .exists()
            });
        if !made {
            std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
            run_command(&argv, &self.root)?;
        }
        let out = self.adopt(task, project)?;
        crate::fsutil::write_atomic(&marker, format!("{digest}\n").as_bytes(), None)
            .map_err(io(&marker))?;
        Ok(out)
    }

    /// Checks that each `repos/<repo>` the command made is a git worktree (or clone) of the
    /// project's repository, and puts it on the task's branch — made from `base` when the
    /// command did not make it.
    fn adopt(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, RepoStatus>, WorkspaceError> {
        let branch = task.branch();
        let mut out = BTreeMap::new();
        for repo in &project.repos {
            let name = &repo.name.value;
            let dir = self.repo_dir(&task.project, name);
            let missing = |what: String| {
                WorkspaceError::Init(format!(
                    "the workspace command did not make a usable repos/{name} ({}): {what}",
                    dir.display()
                ))
            };
            if !dir.join(".git").exists() {
                return Err(missing("it is not a git worktree".into()));
            }
            let g = Git::new(&dir);
            let top = g
                .run(["rev-parse", "--show-toplevel"])
                .map_err(|e| missing(e.to_string()))?;
            if same_path(Path::new(&top), &dir).is_none_or(|same| !same) {
                return Err(missing(format!("its repository is {top}")));
            }
            let origin = g
                .run(["config", "--get", "remote.origin.url"])
                .map_err(|_| missing("it has no remote origin".into()))?;
            if !same_remote(&origin, &repo.url) {
                return Err(missing(format!(
                    "its origin is {origin}, the project's repository is {}",
                    repo.url
                )));
            }
            // The base as the remote has it now (the command's clone may be older), kept
            // where a fetch of any clone puts it; offline, what the clone has.
            let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", repo.base);
            if let Err(e) = g.run(["fetch", "--quiet", "--no-tags", "origin", &refspec]) {
                tracing::warn!(repo = %name, error = %e, "cannot fetch the base; using the clone's");
            }
            let base_commit = [
                format!("refs/remotes/origin/{}", repo.base),
                format!("refs/heads/{}", repo.base),
            ]
            .iter()
            .find_map(|r| {
                g.run([
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{r}^{{commit}}"),
                ])
                .ok()
            })
            .ok_or_else(|| {
                missing(format!(
                    "it has no branch {} (nor origin/{})",
                    repo.base, repo.base
                ))
            })?;
            out.insert(name.clone(), on_task_branch(&dir, &branch, base_commit)?);
        }
        Ok(out)
    }
}

/// Output lines of a failed workspace command kept in its error.
const TAIL_LINES: usize = 15;

/// Runs a workspace command in `dir`; a failure names the command, its exit and the last
/// lines of its output (stdout and stderr, in the order they were written).
fn run_command(argv: &[String], dir: &Path) -> Result<(), WorkspaceError> {
    let log = tempfile::tempfile().map_err(io(dir))?;
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(io(dir))?)
        .stderr(log.try_clone().map_err(io(dir))?)
        .status()
        .map_err(|e| WorkspaceError::Init(format!("cannot run {:?}: {e}", argv[0])))?;
    if status.success() {
        return Ok(());
    }
    let tail = crate::fsutil::tail_lines(log, TAIL_LINES);
    Err(WorkspaceError::Init(format!(
        "`{}` exited with {status}; its last output:\n{tail}",
        argv.join(" ")
    )))
}

/// Whether two paths name the same directory (`None` when either does not exist).
fn same_path(a: &Path, b: &Path) -> Option<bool> {
    Some(a.canonicalize().ok()? == b.canonicalize().ok()?)
}

/// Whether two remote URLs name the same repository: equal once a trailing `/` or `.git` is
/// dropped, or local paths of the same directory.
fn same_remote(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.trim().trim_end_matches('/');
        u.strip_suffix(".git").unwrap_or(u).to_string()
    };
    if norm(a) == norm(b) {
        return true;
    }
    let local = |u: &str| PathBuf::from(u.strip_prefix("file://").unwrap_or(u));
    same_path(&local(a), &local(b)).unwrap_or(false)
}

/// Renders `workspace.run` into an argument vector. The template is split into words first
/// and each word is rendered on its own, from validated names only, so no value can add,
/// split or quote arguments.
pub fn render_command(
    task: &TaskRef,
    project: &ProjectSpec,
    run: &str,
) -> Result<Vec<String>, WorkspaceError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let repos: Vec<&str> = project
        .repos
        .iter()
        .map(|r| r.name.value.as_str())
        .collect();
    let ctx = minijinja::context! {
        builder => task.project.builder_name(),
        category => task.project.category.as_str(),
        project => task.project.project.as_str(),
        task => task.task.as_str(),
        branch => task.branch(),
        repos => repos.join(","),
    };
    let mut argv = Vec::new();
    for word in run.split_whitespace() {
        let rendered = env
            .render_str(word, &ctx)
            .map_err(|e| WorkspaceError::Init(format!("cannot render {word:?}: {e}")))?;
        argv.push(rendered);
    }
    if argv.is_empty() {
        return Err(WorkspaceError::Init("workspace.run is empty".into()));
    }
    Ok(argv)
}
