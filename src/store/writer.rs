//! The status writer: a writer's own file updates, coalesced into commits and published
//! as fast-forwards.
//!
//! Every file has one owning writer, so publishing never needs a merge: when the remote
//! moved, the writer rebuilds its commit by applying the same whole-file updates on the new
//! head and tries again with jittered backoff. It never touches another writer's file and
//! never forces. Callers learn when their update is on the remote from [`Pending`].

use std::collections::BTreeMap;
use std::time::Duration;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use tokio::sync::{mpsc, oneshot};

use super::transport::{Published, Transport};
use super::{GixResultExt, Identity, StoreError};
use crate::state::path::{StatePath, Writer};

/// Which writer this is; decides the files it may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterRole {
    /// Status files (and question documents, created once).
    Reconciler,
    /// `slack.yaml`, plus tasks, answers and approvals on people's behalf.
    SlackBot,
    /// The CLI acting for a person: tasks, answers, approvals.
    Person,
    /// `gaffer lab cleanup`: the lab records of namespaces it removed.
    LabCleanup,
}

impl WriterRole {
    /// Whether this writer may write `path`.
    pub fn may_write(self, path: &StatePath) -> bool {
        let on_behalf = matches!(
            path,
            StatePath::TaskSpec(_)
                | StatePath::Answer(..)
                | StatePath::Approval(..)
                | StatePath::Message(..)
        );
        match self {
            WriterRole::Reconciler => {
                path.owner() == Writer::Reconciler
                    || matches!(path, StatePath::QuestionDoc(..) | StatePath::PlanDoc(..))
            }
            WriterRole::SlackBot => path.owner() == Writer::SlackBot || on_behalf,
            WriterRole::Person => on_behalf,
            WriterRole::LabCleanup => matches!(path, StatePath::LabStatus(_)),
        }
    }

    /// The files this writer owns outright (its own commits to them never wake it).
    pub fn owned(self) -> Writer {
        match self {
            WriterRole::Reconciler => Writer::Reconciler,
            WriterRole::SlackBot => Writer::SlackBot,
            WriterRole::Person | WriterRole::LabCleanup => Writer::Person,
        }
    }
}

impl std::fmt::Display for WriterRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterRole::Reconciler => "reconciler",
            WriterRole::SlackBot => "slack bot",
            WriterRole::Person => "person",
            WriterRole::LabCleanup => "lab cleanup",
        })
    }
}

/// One whole-file update.
#[derive(Debug, Clone)]
pub struct Update {
    /// The file.
    pub path: StatePath,
    /// The new content, or None to delete the file.
    pub content: Option<Vec<u8>>,
    /// What changed, for the commit message (e.g. `ai-dev/api/jwt-auth Running → AwaitingAnswer`).
    pub summary: String,
    /// Only create the file; leave it alone if it exists (question documents).
    pub create_only: bool,
}

impl Update {
    /// Writes `content` to `path`.
    pub fn put(path: StatePath, content: impl Into<Vec<u8>>, summary: impl Into<String>) -> Self {
        Self {
            path,
            content: Some(content.into()),
            summary: summary.into(),
            create_only: false,
        }
    }

    /// Deletes `path`.
    pub fn delete(path: StatePath, summary: impl Into<String>) -> Self {
        Self {
            path,
            content: None,
            summary: summary.into(),
            create_only: false,
        }
    }
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Which files may be written.
    pub role: WriterRole,
    /// Commit author and committer.
    pub identity: Identity,
    /// Updates arriving within this window after the first are put in one commit.
    pub window: Duration,
    /// Attempts before a batch fails (each rejected push is one).
    pub max_attempts: u32,
    /// Most updates in one commit.
    pub max_batch: usize,
    /// The commit author when it is not the committer (the Slack bot committing for a
    /// person); `identity` stays the committer.
    pub author: Option<Identity>,
    /// Trailer lines appended to the commit message (e.g. `Slack-User: U0123`).
    pub trailers: Vec<String>,
}

impl WriterConfig {
    /// Defaults for `role` committing as `identity`.
    pub fn new(role: WriterRole, identity: Identity) -> Self {
        Self {
            role,
            identity,
            window: Duration::from_millis(2),
            max_attempts: 50,
            max_batch: 500,
            author: None,
            trailers: Vec::new(),
        }
    }
}

type Done = oneshot::Sender<Result<ObjectId, String>>;

struct Job {
    updates: Vec<Update>,
    done: Done,
}

/// Handle to a running writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusWriter {
    tx: mpsc::UnboundedSender<Job>,
    role: WriterRole,
}

/// An update that was accepted; await it to learn when it is on the remote.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<ObjectId, String>>);

impl Pending {
    /// The commit on the remote that contains the update (or the head that already had it).
    pub async fn published(self) -> Result<ObjectId, StoreError> {
        match self.0.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(StoreError::WriterStopped(e)),
            Err(_) => Err(StoreError::WriterStopped("writer task ended".into())),
        }
    }
}

impl StatusWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(transport: Transport, config: WriterConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let role = config.role;
        tokio::spawn(run(transport, config, rx));
        Self { tx, role }
    }

    /// Queues updates; refuses files this writer does not own, before anything is queued.
    pub fn submit(&self, updates: Vec<Update>) -> Result<Pending, StoreError> {
        for u in &updates {
            // The reconciler creates a story's task.yaml once (never over one): from then on
            // it is a person's file like any task's.
            let story = self.role == WriterRole::Reconciler
                && u.create_only
                && matches!(u.path, StatePath::TaskSpec(_));
            if !story && !self.role.may_write(&u.path) {
                return Err(StoreError::NotOwner {
                    writer: self.role.to_string(),
                    path: u.path.to_path(),
                    owner: u.path.owner().to_string(),
                });
            }
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job { updates, done })
            .map_err(|_| StoreError::WriterStopped("writer task ended".into()))?;
        Ok(Pending(rx))
    }

    /// Queues updates and waits until they are on the remote.
    pub async fn write(&self, updates: Vec<Update>) -> Result<ObjectId, StoreError> {
        self.submit(updates)?.published().await
    }
}

async fn run(transport: Transport, config: WriterConfig, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + config.window;
        let mut count = jobs[0].updates.len();
        while count < config.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    count += job.updates.len();
                    jobs.push(job);
                }
                _ => break,
            }
        }
        // Anything already queued joins this batch too: under load, commits grow instead
        // of queueing up.
        while count < config.max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.updates.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let updates: Vec<Update> = jobs.iter().flat_map(|j| j.updates.clone()).collect();
        let t = transport.clone();
        let c = config.clone();
        let result = tokio::task::spawn_blocking(move || publish(&t, &c, &updates))
            .await
            .unwrap_or_else(|e| Err(StoreError::WriterStopped(e.to_string())));
        let result = result.map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "status writer could not publish");
        }
        for job in jobs {
            let _ = job.done.send(result.clone());
        }
    }
}

/// Builds and publishes one commit holding `updates`, retrying on rejection. Returns the
/// published commit, or the current head when the updates changed nothing.
pub fn publish(
    transport: &Transport,
    config: &WriterConfig,
    updates: &[Update],
) -> Result<ObjectId, StoreError> {
    // Last update of a path wins; summaries are kept in order, once each.
    let mut files: BTreeMap<String, &Update> = BTreeMap::new();
    let mut summaries: Vec<&str> = Vec::new();
    for u in updates {
        files.insert(u.path.to_path(), u);
        if !u.summary.is_empty() && !summaries.contains(&u.summary.as_str()) {
            summaries.push(&u.summary);
        }
    }
    let mut message = commit_message(&summaries, files.len());
    if !config.trailers.is_empty() {
        // A blank line, then the trailer block.
        message.push('\n');
        for t in &config.trailers {
            message.push_str(t);
            message.push('\n');
        }
    }
    let mut base = transport.head();
    let mut delay = Duration::from_millis(2);
    let mut last_problem = String::new();
    for attempt in 1..=config.max_attempts {
        match base.and_then(|b| try_once(transport, config, &files, &message, b)) {
            Ok(Attempt::Done(id)) => {
                tracing::debug!(target: "gaffer::hop", hop = "published", writer = %config.role, commit = %id, attempt);
                return Ok(id);
            }
            Ok(Attempt::Rejected(why)) => {
                tracing::debug!(attempt, %why, "publish rejected; rebuilding on the new head");
                last_problem = why;
            }
            Err(e) => {
                // The remote may be briefly unreachable (network, a lock, a restart):
                // keep the updates and try again rather than losing them.
                tracing::warn!(attempt, error = %e, "publishing state failed; retrying");
                last_problem = e.to_string();
            }
        }
        // Jittered exponential backoff, capped; contention clears quickly.
        let jitter = fastrand::u64(0..=delay.as_millis() as u64);
        std::thread::sleep(delay / 2 + Duration::from_millis(jitter / 2));
        delay = (delay * 2).min(Duration::from_millis(500));
        base = transport.fetch();
    }
    Err(StoreError::WriterStopped(format!(
        "gave up after {} attempts; last problem: {last_problem}",
        config.max_attempts
    )))
}

enum Attempt {
    Done(ObjectId),
    Rejected(String),
}

fn try_once(
    transport: &Transport,
    config: &WriterConfig,
    files: &BTreeMap<String, &Update>,
    message: &str,
    base: Option<ObjectId>,
) -> Result<Attempt, StoreError> {
    let repo = transport.repo();
    let base_tree = match base {
        Some(b) => Some(super::read::tree_of(&repo, b)?),
        None => None,
    };
    let tree = build_tree(&repo, base_tree, files)?;
    if Some(tree) == base_tree
        && let Some(b) = base
    {
        return Ok(Attempt::Done(b));
    }
    let committer = signature(&config.identity);
    let author = config
        .author
        .as_ref()
        .map_or_else(|| committer.clone(), signature);
    let commit = gix::objs::Commit {
        tree,
        parents: base.into_iter().collect(),
        author,
        committer,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    let id = repo.write_object(&commit).gix("write commit")?.detach();
    Ok(match transport.publish(id, base)? {
        Published::Yes => Attempt::Done(id),
        Published::Rejected(why) => Attempt::Rejected(why),
    })
}

fn build_tree(
    repo: &gix::Repository,
    base_tree: Option<ObjectId>,
    files: &BTreeMap<String, &Update>,
) -> Result<ObjectId, StoreError> {
    let start = base_tree.unwrap_or_else(|| ObjectId::empty_tree(repo.object_hash()));
    let base = repo.find_tree(start).gix("find base tree")?;
    let mut editor = repo.edit_tree(start).gix("edit tree")?;
    for (path, u) in files {
        if u.create_only
            && base
                .lookup_entry_by_path(path.as_str())
                .gix("look up entry")?
                .is_some()
        {
            continue;
        }
        match &u.content {
            Some(bytes) => {
                let blob = repo.write_blob(bytes).gix("write blob")?.detach();
                editor
                    .upsert(path.as_str(), EntryKind::Blob, blob)
                    .gix("edit tree")?;
            }
            None => {
                editor.remove(path.as_str()).gix("edit tree")?;
            }
        }
    }
    Ok(editor.write().gix("write tree")?.detach())
}

fn signature(id: &Identity) -> gix::actor::Signature {
    gix::actor::Signature {
        name: id.name.as_str().into(),
        email: id.email.as_str().into(),
        time: gix::date::Time::now_utc(),
    }
}

fn commit_message(summaries: &[&str], files: usize) -> String {
    match summaries {
        [] => format!(
            "gaffer: update {files} file{}\n",
            if files == 1 { "" } else { "s" }
        ),
        [one] => format!("gaffer: {one}\n"),
        many => {
            let mut m = format!("gaffer: {} (+{} more)\n\n", many[0], many.len() - 1);
            for s in many {
                m.push_str("- ");
                m.push_str(s);
                m.push('\n');
            }
            m
        }
    }
}
