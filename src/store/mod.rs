//! The state-repository engine: read with gix in-process, wake on changes, write back
//! without conflicts.
//!
//! - [`transport`] reaches the remote: a local bare repository is opened directly (reads
//!   and compare-and-swap ref updates with gix, no copy needed), a URL is mirrored into a
//!   clone in the data dir and synced with the `git` binary (fetch, `push --porcelain`).
//! - [`read`] loads a commit's tree into a [`Snapshot`](crate::state::snapshot::Snapshot)
//!   and diffs two trees.
//! - [`tracker`] keeps a snapshot at the remote's head, advancing it by diffs so a wake costs
//!   O(changed files), and says which objects a range of commits woke.
//! - [`writer`] coalesces a writer's own file updates into commits and publishes them as
//!   fast-forwards, re-applying them on the new head when someone else pushed first.
//! - [`shared`] is the seam the reconciler reads and writes through ([`Store`]), with
//!   [`GitStore`] over the three above.
//! - [`watch`] turns filesystem events, polls, webhooks and timers into wake-ups.

pub mod read;
pub mod shared;
pub mod tracker;
pub mod transport;
pub mod watch;
pub mod writer;

pub use shared::{GitStore, Signature, Store};
pub use tracker::{Tracker, Wake};
pub use transport::Transport;
pub use writer::{StatusWriter, Update, WriterConfig, WriterRole};

/// Errors of the state-repository engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing git objects and refs in-process failed.
    #[error("git object store: {0}")]
    Gix(String),
    /// Running the git binary failed.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The remote's branch does not exist.
    #[error("branch {branch} does not exist in {remote}")]
    NoBranch {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
    },
    /// A file outside the writer's ownership was submitted.
    #[error("{writer} may not write {path}: it is owned by the {owner}")]
    NotOwner {
        /// The writer.
        writer: String,
        /// The file.
        path: String,
        /// Its owner.
        owner: String,
    },
    /// The writer stopped before the update was published.
    #[error("the status writer stopped: {0}")]
    WriterStopped(String),
    /// Filesystem trouble in the data dir.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) trait GixResultExt<T> {
    fn gix(self, what: &str) -> Result<T, StoreError>;
}

impl<T, E: std::fmt::Display> GixResultExt<T> for Result<T, E> {
    fn gix(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Gix(format!("{what}: {e}")))
    }
}

/// Who a writer commits as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Author and committer name.
    pub name: String,
    /// Author and committer email; the tracker recognises the writer's own commits by it.
    pub email: String,
}

impl Identity {
    /// The reconciler's default identity.
    pub fn reconciler() -> Self {
        Self {
            name: "gaffer".into(),
            email: "reconciler@gaffer.invalid".into(),
        }
    }

    /// The Slack bot's default identity.
    pub fn slack_bot() -> Self {
        Self {
            name: "gaffer-slack".into(),
            email: "slack-bot@gaffer.invalid".into(),
        }
    }
}
