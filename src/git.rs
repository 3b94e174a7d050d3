//! Running the `git` binary with a locked-down environment.
//!
//! gix has no push, so fetch and push (and, for now, the few commits the CLI makes) run the
//! real `git`. Like jj, every call gets `LC_ALL=C`, no stdin, no terminal prompts, no hooks
//! and no fsmonitor, so output is parseable and nothing interactive or user-scripted runs.
//! Credentials still come from the user's ordinary git configuration.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The oldest git gaffer accepts (for `push --porcelain` and `--atomic` behaviour).
pub const MIN_VERSION: (u32, u32) = (2, 30);

/// An error from running git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started at all.
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    /// git ran and failed.
    #[error("git {args} failed ({status}): {stderr}")]
    Failed {
        /// The arguments, joined for display.
        args: String,
        /// The exit status.
        status: String,
        /// What git printed on stderr, trimmed.
        stderr: String,
    },
    /// git is too old.
    #[error("git {found} is too old; gaffer needs git {}.{} or newer", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld {
        /// The version found.
        found: String,
    },
}

/// A git invocation context: a working directory (or a bare repo) and extra environment.
#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Git {
    /// git commands run in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable to every call.
    pub fn with_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The directory commands run in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command<I, S>(&self, args: I) -> (Command, String)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir)
            .args([
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(["-c", "protocol.file.allow=always"])
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin(Stdio::null());
        let mut shown = Vec::new();
        for a in args {
            shown.push(a.as_ref().to_string_lossy().into_owned());
            cmd.arg(a.as_ref());
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        (cmd, shown.join(" "))
    }

    /// Runs git and returns its stdout (trimmed of the final newline).
    pub fn run<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (mut cmd, shown) = self.command(args);
        let out = cmd.output().map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Failed {
                args: shown,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        if s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }

    /// Pushes `commit` to `remote_ref` of `remote` as a fast-forward (never forced) and says
    /// whether the remote took it. A rejection (someone else pushed first, or the remote's
    /// ref lock was held) is [`PushOutcome::Rejected`]; anything else is an error.
    pub fn push(
        &self,
        remote: &str,
        commit: &str,
        remote_ref: &str,
    ) -> Result<PushOutcome, GitError> {
        let refspec = format!("{commit}:{remote_ref}");
        let (mut cmd, shown) = self.command(["push", "--porcelain", remote, refspec.as_str()]);
        let out = cmd.output().map_err(GitError::Spawn)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stdout.lines() {
            let mut fields = line.splitn(3, '\t');
            let (Some(flag), Some(_), Some(summary)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            match flag {
                " " | "*" | "=" if out.status.success() => return Ok(PushOutcome::Pushed),
                "!" => return Ok(PushOutcome::Rejected(summary.to_string())),
                _ => {}
            }
        }
        if out.status.success() {
            return Ok(PushOutcome::Pushed);
        }
        Err(GitError::Failed {
            args: shown,
            status: out.status.to_string(),
            stderr: stderr.trim().to_string(),
        })
    }

    /// Runs git with `input` on stdin and returns stdout.
    pub fn run_with_input<I, S>(&self, args: I, input: &[u8]) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::io::Write;
        let (mut cmd, shown) = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(GitError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).map_err(GitError::Spawn)?;
        }
        let out = child.wait_with_output().map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Failed {
                args: shown,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Checks that git is installed and new enough.
    pub fn check_version() -> Result<String, GitError> {
        let v = Git::new(".").run(["--version"])?;
        let found = v.trim_start_matches("git version ").to_string();
        let mut nums = found
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        if (major, minor) < MIN_VERSION {
            return Err(GitError::TooOld { found });
        }
        Ok(found)
    }
}

/// What happened to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote ref now points at the commit.
    Pushed,
    /// The remote refused (not a fast-forward, or a concurrent update); fetch and retry.
    Rejected(String),
}

/// Builds a commit from a base tree plus file changes, without a worktree, using a private
/// index file. `changes` are `(path, Some(bytes))` to write and `(path, None)` to delete.
pub fn commit_files(
    git: &Git,
    parent: Option<&str>,
    changes: &[(String, Option<Vec<u8>>)],
    message: &str,
) -> Result<String, GitError> {
    let index = tempfile::NamedTempFile::new().map_err(GitError::Spawn)?;
    let index_path = index.path().to_string_lossy().into_owned();
    // An empty file is not a valid index; let git create it.
    std::fs::remove_file(index.path()).map_err(GitError::Spawn)?;
    let g = git.clone().with_env("GIT_INDEX_FILE", index_path);
    if let Some(p) = parent {
        g.run(["read-tree", p])?;
    }
    for (path, content) in changes {
        match content {
            Some(bytes) => {
                let sha = g.run_with_input(["hash-object", "-w", "--stdin"], bytes)?;
                g.run([
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("100644,{sha},{path}"),
                ])?;
            }
            None => {
                // Mode 0 removes the entry; unlike --force-remove it needs no work tree.
                let line = format!("0 {}\t{path}\n", "0".repeat(40));
                g.run_with_input(["update-index", "--index-info"], line.as_bytes())?;
            }
        }
    }
    let tree = g.run(["write-tree"])?;
    let mut args = vec!["commit-tree".to_string(), tree, "-m".into(), message.into()];
    if let Some(p) = parent {
        args.push("-p".into());
        args.push(p.into());
    }
    g.run(&args)
}

/// The environment that gives commits an identity when the user's config has none.
pub fn identity_env(git: Git) -> Git {
    let has = |k: &str| git.run(["config", "--get", k]).is_ok_and(|v| !v.is_empty());
    let mut g = git.clone();
    if !has("user.name") && std::env::var_os("GIT_AUTHOR_NAME").is_none() {
        g = g
            .with_env("GIT_AUTHOR_NAME", "gaffer")
            .with_env("GIT_COMMITTER_NAME", "gaffer");
    }
    if !has("user.email") && std::env::var_os("GIT_AUTHOR_EMAIL").is_none() {
        g = g
            .with_env("GIT_AUTHOR_EMAIL", "gaffer@localhost")
            .with_env("GIT_COMMITTER_EMAIL", "gaffer@localhost");
    }
    g
}

/// Removes lock files under `git_dir` (ref locks, `packed-refs.lock`, `index.lock`) older
/// than `max_age`. Git never removes a stale lock itself, so a process killed while holding
/// one (kill -9, power loss) would block every later update. Locks are held for
/// milliseconds, so one older than a few seconds is stale. Returns what was removed.
pub fn remove_stale_locks(git_dir: &Path, max_age: std::time::Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut stack = vec![git_dir.join("refs")];
    let mut candidates = vec![git_dir.join("packed-refs.lock"), git_dir.join("index.lock")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) if p.extension().is_some_and(|x| x == "lock") => candidates.push(p),
                _ => {}
            }
        }
    }
    for p in candidates {
        let old = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= max_age);
        if old && std::fs::remove_file(&p).is_ok() {
            tracing::warn!(lock = %p.display(), "removed a stale git lock left by a crashed process");
            removed.push(p);
        }
    }
    removed
}
