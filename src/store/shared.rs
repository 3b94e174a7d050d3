//! The state repository as the reconciler shares it: one seam over the tracker, the status
//! writer and the history, so the task lifecycle can run against an in-memory store in the
//! phase table tests and against git in production.
//!
//! [`GitStore`] is the production store. Its [`Store::write`] publishes a batch of updates
//! as one commit and then advances the tracker to the remote's head, in that order, so the
//! next reconcile reads what was just written; the objects that other writers' commits
//! changed on the way are returned to be woken.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::state::path::ObjectKey;
use crate::state::snapshot::Snapshot;
use crate::store::{StatusWriter, StoreError, Tracker, Transport, Update};

/// Who made a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The author's email.
    pub author: String,
    /// The committer's email (a bot committing for a person differs from its author).
    pub committer: String,
}

/// What the reconciler reads from and writes to the state repository.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Calls `f` with the head and the snapshot at it, under the tracker's read lock.
    fn read(&self, f: &mut dyn FnMut(Option<String>, &Snapshot)) -> Result<(), StoreError>;

    /// Publishes `updates` as one commit and advances to the new head; returns the objects
    /// that commits by others, which came in with it, changed.
    async fn write(&self, updates: Vec<Update>) -> Result<BTreeSet<ObjectKey>, StoreError>;

    /// Who made the last commit, up to `head`, that changed `path`.
    async fn last_change(&self, head: &str, path: &str) -> Result<Option<Signature>, StoreError>;
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

    async fn last_change(&self, head: &str, path: &str) -> Result<Option<Signature>, StoreError> {
        let dir = self.transport.repo().git_dir().to_path_buf();
        let (head, path) = (head.to_string(), path.to_string());
        let out = tokio::task::spawn_blocking(move || {
            crate::git::Git::new(&dir).run(["log", "-1", "--format=%ae%n%ce", &head, "--", &path])
        })
        .await
        .map_err(|e| StoreError::WriterStopped(e.to_string()))?;
        // A path with no history (or an unreadable one) has no author: nothing it says counts.
        let out = out.unwrap_or_default();
        let mut lines = out.lines().map(str::trim);
        let (author, committer) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        Ok(
            (!author.is_empty() || !committer.is_empty()).then(|| Signature {
                author: author.to_string(),
                committer: committer.to_string(),
            }),
        )
    }
}
