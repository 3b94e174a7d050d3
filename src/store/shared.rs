//! The state repository as the reconciler shares it: one seam over the tracker, the status
//! writer and the history, so the task lifecycle can run against an in-memory store in the
//! phase table tests and against git in production.
//!
//! [`GitStore`] is the production store. Its [`Store::write`] publishes a batch of updates
//! as one commit and then advances the tracker to the remote's head, in that order, so the
//! next reconcile reads what was just written; the objects that other writers' commits
//! changed on the way are returned to be woken.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::state::path::ObjectKey;
use crate::state::snapshot::Snapshot;
use crate::store::{StatusWriter, StoreError, Tracker, Transport, Update};

/// Who made a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// The author's email.
    pub author: String,
    /// The committer's email (a bot committing for a person differs from its author).
    pub committer: String,
    /// The principal of a good signature by one of the listed keys, when the commit has one.
    pub signer: Option<String>,
}

/// What the reconciler reads from and writes to the state repository.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Calls `f` with the head and the snapshot at it, under the tracker's read lock.
    fn read(&self, f: &mut dyn FnMut(Option<String>, &Snapshot)) -> Result<(), StoreError>;

    /// Publishes `updates` as one commit and advances to the new head; returns the objects
    /// that commits by others, which came in with it, changed.
    async fn write(&self, updates: Vec<Update>) -> Result<BTreeSet<ObjectKey>, StoreError>;

    /// Who made the last commit, up to `head`, that changed `path`; its signature is checked
    /// against `allowed_signers` (git's format, one key a line) when there are any.
    async fn last_change(
        &self,
        head: &str,
        path: &str,
        allowed_signers: &[String],
    ) -> Result<Option<Signature>, StoreError>;
}

/// The production store: a transport, the tracker kept at its head and a status writer.
#[derive(Debug, Clone)]
pub struct GitStore {
    /// The state remote.
    pub transport: Transport,
    /// The state at the remote's head.
    pub tracker: Arc<RwLock<Tracker>>,
    /// The writer of this process's own files.
    pub writer: StatusWriter,
}

fn poisoned() -> StoreError {
    StoreError::WriterStopped("tracker lock poisoned".into())
}

#[async_trait::async_trait]
impl Store for GitStore {
    fn read(&self, f: &mut dyn FnMut(Option<String>, &Snapshot)) -> Result<(), StoreError> {
        let t = self.tracker.read().map_err(|_| poisoned())?;
        f(t.head().map(|h| h.to_string()), t.snapshot());
        Ok(())
    }

    async fn write(&self, updates: Vec<Update>) -> Result<BTreeSet<ObjectKey>, StoreError> {
        self.writer.write(updates).await?;
        let (transport, tracker) = (self.transport.clone(), self.tracker.clone());
        tokio::task::spawn_blocking(move || {
            let head = transport.head()?;
            let mut t = tracker.write().map_err(|_| poisoned())?;
            if t.head() == head {
                return Ok(BTreeSet::new());
            }
            Ok(t.advance(&transport.repo(), head)?.keys)
        })
        .await
        .map_err(|e| StoreError::WriterStopped(e.to_string()))?
    }

    async fn last_change(
        &self,
        head: &str,
        path: &str,
        allowed_signers: &[String],
    ) -> Result<Option<Signature>, StoreError> {
        let dir = self.transport.repo().git_dir().to_path_buf();
        let (head, path) = (head.to_string(), path.to_string());
        let (pgp, ssh): (Vec<String>, Vec<String>) =
            allowed_signers.iter().cloned().partition(|k| {
                k.trim_start()
                    .starts_with(crate::state::spec::PGP_KEY_BEGIN)
            });
        let out = tokio::task::spawn_blocking(move || -> Result<String, StoreError> {
            let git = crate::git::Git::new(&dir);
            if ssh.is_empty() && pgp.is_empty() {
                return Ok(git
                    .run(["log", "-1", "--format=%ae%n%ce", &head, "--", &path])
                    .unwrap_or_default());
            }
            let io = |path: &Path| {
                let path = path.display().to_string();
                move |source| StoreError::Io { path, source }
            };
            // git checks SSH signatures against a file and OpenPGP ones against a keyring;
            // both hold public keys only, and only the listed ones.
            let scratch = tempfile::tempdir().map_err(io(Path::new("allowed signers")))?;
            let signers = scratch.path().join("allowed_signers");
            std::fs::write(&signers, format!("{}\n", ssh.join("\n"))).map_err(io(&signers))?;
            let gnupg = scratch.path().join("gnupg");
            std::fs::create_dir_all(&gnupg).map_err(io(&gnupg))?;
            std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io(&gnupg))?;
            for key in &pgp {
                import_pgp(&gnupg, key);
            }
            if !pgp.is_empty() {
                // Listing a key is the trust: its owner is trusted outright, no web of trust.
                trust_all(&gnupg);
            }
            let git = git.with_env("GNUPGHOME", gnupg.display().to_string());
            let config = format!("gpg.ssh.allowedSignersFile={}", signers.display());
            Ok(git
                .run([
                    "-c",
                    config.as_str(),
                    "log",
                    "-1",
                    "--format=%ae%n%ce%n%G?%n%GS",
                    &head,
                    "--",
                    &path,
                ])
                .unwrap_or_default())
        })
        .await
        .map_err(|e| StoreError::WriterStopped(e.to_string()))??;
        // A path with no history (or an unreadable one) has no author: nothing it says counts.
        let mut lines = out.lines().map(str::trim);
        let (author, committer) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        // `G`: a good signature by a listed key; `%GS` names its principal (SSH) or the
        // key's user id `Name <email>` (OpenPGP).
        let signer = match (lines.next(), lines.next()) {
            (Some("G"), Some(p)) if !p.is_empty() => Some(
                p.rsplit_once('<')
                    .and_then(|(_, rest)| rest.strip_suffix('>'))
                    .unwrap_or(p)
                    .to_string(),
            ),
            _ => None,
        };
        Ok(
            (!author.is_empty() || !committer.is_empty()).then(|| Signature {
                author: author.to_string(),
                committer: committer.to_string(),
                signer,
            }),
        )
    }
}

/// Marks every primary key in the keyring at `gnupg` as ultimately trusted.
fn trust_all(gnupg: &Path) {
    let listed = std::process::Command::new("gpg")
        .args(["--batch", "--with-colons", "--list-keys"])
        .env("GNUPGHOME", gnupg)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(listed) = listed else { return };
    let mut trust = String::new();
    let mut primary = false;
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        if line.starts_with("pub:") {
            primary = true;
        } else if primary && line.starts_with("fpr:") {
            if let Some(fpr) = line.split(':').nth(9) {
                trust.push_str(&format!("{fpr}:6:\n"));
            }
            primary = false;
        }
    }
    gpg_with_input(
        gnupg,
        &["--batch", "--quiet", "--import-ownertrust"],
        &trust,
    );
}

/// Imports an armoured OpenPGP public key into the keyring at `gnupg`; a key gpg refuses is
/// left out (it then proves nothing), and said in the log.
fn import_pgp(gnupg: &Path, key: &str) {
    gpg_with_input(gnupg, &["--batch", "--quiet", "--import"], key);
}

/// Runs gpg on the keyring at `gnupg` with `input` on its standard input.
fn gpg_with_input(gnupg: &Path, args: &[&str], input: &str) {
    use std::io::Write as _;
    let child = std::process::Command::new("gpg")
        .args(args)
        .env("GNUPGHOME", gnupg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let ok = child.and_then(|mut c| {
        if let Some(mut stdin) = c.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        c.wait_with_output()
    });
    match ok {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::warn!(
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "gpg refused an OpenPGP key of authors.signing_keys (or its trust)"
        ),
        Err(e) => tracing::warn!(error = %e, "gpg could not be run to check OpenPGP signatures"),
    }
}
