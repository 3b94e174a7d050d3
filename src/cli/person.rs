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
    /// marked `create_only` whose file someone else created first is an error.
    pub fn commit(&self, identity: Identity, updates: Vec<Update>) -> Result<String, CliError> {
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
