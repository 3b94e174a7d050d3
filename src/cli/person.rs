//! What the CLI commands that act for a person share: who they are, and committing their
//! spec files through the same conflict-free writer the reconciler and the bot use.

use super::CliError;
use crate::store::read::read_file;
use crate::store::{Identity, StatusWriter, Transport, Update, WriterConfig, WriterRole};

/// Options of every command that commits for a person.
#[derive(Debug, clap::Args)]
pub struct PersonArgs {
    /// Who acts and commits (default: your git user.email); answers count only from authors
    /// listed in gaffer.yaml `authors.answers`.
    #[arg(long)]
    pub by: Option<String>,
    /// The state repository (a local bare repo path or a URL git can fetch and push).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

impl PersonArgs {
    /// The commit identity (git user.name/email) and who is recorded as acting.
    pub fn who(&self) -> (Identity, String) {
        let g = crate::git::Git::new(".");
        let get = |key: &str| {
            g.run(["config", "--get", key])
                .ok()
                .filter(|s| !s.is_empty())
        };
        // The commit's author is who acts: that is what the reconciler checks.
        let identity = Identity {
            name: get("user.name").unwrap_or_else(|| "gaffer-cli".into()),
            email: self
                .by
                .clone()
                .or_else(|| get("user.email"))
                .unwrap_or_else(|| "cli@gaffer.invalid".into()),
        };
        let by = identity.email.clone();
        (identity, by)
    }

    /// Commits `updates` as `identity` and waits until they are on the remote. An update
    /// marked `create_only` whose file someone else created first is an error. When git is
    /// configured to sign commits (`commit.gpgsign`), the commit is made and signed by git
    /// itself, so the reconciler can check the signature against `authors.signing_keys`.
    pub fn commit(&self, identity: Identity, updates: Vec<Update>) -> Result<String, CliError> {
        if signing_configured() && updates.iter().all(|u| !u.create_only) {
            return self.commit_signed(&identity, &updates);
        }
        let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
        let rt = tokio::runtime::Runtime::new().map_err(|e| CliError::internal(e.to_string()))?;
        rt.block_on(async {
            let transport = Transport::open(&self.state, &self.branch, tmp.path(), false)
                .map_err(|e| CliError::user(format!("cannot open {}: {e}", self.state)))?;
            let writer = StatusWriter::spawn(
                transport.clone(),
                WriterConfig::new(WriterRole::Person, identity),
            );
            let wanted: Vec<(String, Option<Vec<u8>>)> = updates
                .iter()
                .filter(|u| u.create_only)
                .map(|u| (u.path.to_path(), u.content.clone()))
                .collect();
            let id = writer
                .write(updates)
                .await
                .map_err(|e| CliError::user(e.to_string()))?;
            let repo = transport.repo();
            for (path, content) in wanted {
                let landed =
                    read_file(&repo, id, &path).map_err(|e| CliError::internal(e.to_string()))?;
                if landed != content {
                    return Err(CliError::user(format!("{path} already exists")));
                }
            }
            Ok(id.to_string())
        })
    }
}

/// Whether the person's git signs commits (`commit.gpgsign = true`).
fn signing_configured() -> bool {
    std::process::Command::new("git")
        .args(["config", "--get", "--type=bool", "commit.gpgsign"])
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}

impl PersonArgs {
    /// Commits with the git binary in a fresh clone, signed as the person's git config says,
    /// and pushes; when someone else pushed first, starts again from their head (a few times).
    fn commit_signed(&self, identity: &Identity, updates: &[Update]) -> Result<String, CliError> {
        let summary = updates
            .iter()
            .map(|u| u.summary.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        for u in updates {
            if !crate::store::WriterRole::Person.may_write(&u.path) {
                return Err(CliError::internal(format!(
                    "a person's command may not write {}",
                    u.path.to_path()
                )));
            }
        }
        let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
        let work = tmp.path().join("state");
        let git = |args: &[&str]| -> Result<String, CliError> {
            let out = std::process::Command::new("git")
                .current_dir(if work.exists() {
                    work.as_path()
                } else {
                    tmp.path()
                })
                .args(["-c", "core.hooksPath=/dev/null"])
                .args(args)
                .env("GIT_AUTHOR_NAME", &identity.name)
                .env("GIT_AUTHOR_EMAIL", &identity.email)
                .env("GIT_COMMITTER_NAME", &identity.name)
                .env("GIT_COMMITTER_EMAIL", &identity.email)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| CliError::internal(format!("git: {e}")))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(CliError::user(format!(
                    "git {}: {}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        };
        let dest = work.display().to_string();
        git(&[
            "clone",
            "--quiet",
            "--single-branch",
            "--branch",
            &self.branch,
            "--",
            &self.state,
            &dest,
        ])?;
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        let upstream = format!("origin/{}", self.branch);
        for _ in 0..5 {
            for u in updates {
                let file = work.join(u.path.to_path());
                match &u.content {
                    Some(bytes) => {
                        if let Some(dir) = file.parent() {
                            std::fs::create_dir_all(dir).map_err(|e| {
                                CliError::internal(format!("{}: {e}", dir.display()))
                            })?;
                        }
                        std::fs::write(&file, bytes)
                            .map_err(|e| CliError::internal(format!("{}: {e}", file.display())))?;
                    }
                    None => {
                        let _ = std::fs::remove_file(&file);
                    }
                }
                git(&["add", "--all", "--", &u.path.to_path()])?;
            }
            git(&["commit", "--quiet", "--gpg-sign", "-m", &summary])?;
            if git(&["push", "--quiet", "origin", &refspec]).is_ok() {
                return git(&["rev-parse", "HEAD"]);
            }
            // Someone else pushed first: their head, then ours again on top.
            git(&["fetch", "--quiet", "origin", &self.branch])?;
            git(&["reset", "--quiet", "--hard", &upstream])?;
        }
        Err(CliError::user(format!(
            "could not push to {}: others kept pushing first; try again",
            self.state
        )))
    }
}
