//! Forges: where changes are reviewed and merged.
//!
//! [`Forge`] is the connector trait; [`LocalForge`] is the embedded default: task branches are
//! pushed to the repos' own (local bare) remotes, a change request is recorded with a number
//! and a state in gaffer's data dir, and an approval merges it into the base branch with a
//! compare-and-swap on the base ref. Opening and merging are find-or-create, so a restart
//! never opens a second change or merges twice.

pub mod body;
pub mod github;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::git::{Git, GitError};

/// A change to open (or find).
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    /// The repo's clone URL (for the local forge, a bare repository path).
    pub repo_url: String,
    /// The mirror clone holding the task branch.
    pub mirror: PathBuf,
    /// `gaffer/<task>`.
    pub head_branch: String,
    /// The base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// `owner/name` on GitHub, when the forge is GitHub.
    pub repo: Option<String>,
}

/// A change as the forge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Number, unique per forge.
    pub number: u64,
    /// Repo URL.
    pub repo_url: String,
    /// Head branch.
    pub head_branch: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// The head commit last pushed.
    pub head_sha: String,
    /// The merge commit.
    #[serde(default)]
    pub merge_commit: Option<String>,
    /// A link for people.
    pub url: String,
    /// `owner/name` on GitHub, when the forge is GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// A review of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The forge's id.
    pub id: u64,
    /// The reviewer's login.
    pub user: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`.
    pub state: String,
    /// The review's text.
    pub body: String,
    /// The head commit reviewed.
    pub commit_id: String,
    /// Line comments, `path:line: text` (read for changes requested).
    pub comments: Vec<String>,
}

/// A change's reviews and the change's author (whose own reviews never count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reviews {
    /// The change's author (gaffer's user on the forge).
    pub author: String,
    /// Oldest first.
    pub reviews: Vec<Review>,
}

/// Where an image build stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageBuild {
    /// Just asked for.
    Dispatched,
    /// Running (its URL, when known).
    Running(String),
    /// Built and pushed.
    Built,
}

/// Errors of forges.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The merge cannot be done automatically.
    #[error("merge blocked: {0}")]
    Blocked(String),
    /// Storage trouble.
    #[error("forge storage: {0}")]
    Storage(String),
    /// The forge's API failed.
    #[error("forge: {0}")]
    Api(String),
    /// Not configured for what was asked.
    #[error("forge: {0}")]
    Config(String),
    /// The API's rate limit is used up until then.
    #[error("forge: rate limited until {until}")]
    RateLimited {
        /// When the limit resets.
        until: jiff::Timestamp,
    },
}

/// Pushes `branch` from the mirror to its origin (the `git` binary: your own credentials);
/// returns the pushed head. The task branch belongs to gaffer: a reset after a changed answer
/// rewrites it, hence `--force`.
pub fn push_branch(mirror: &Path, branch: &str) -> Result<String, ForgeError> {
    let head = Git::new(mirror).run(["rev-parse", &format!("refs/heads/{branch}")])?;
    Git::new(mirror).run([
        "push",
        "--quiet",
        "--force",
        "origin",
        &format!("refs/heads/{branch}:refs/heads/{branch}"),
    ])?;
    Ok(head)
}

/// Opens and merges changes.
#[async_trait::async_trait]
pub trait Forge: Send + Sync + std::fmt::Debug {
    /// Pushes the head branch and finds or creates its change.
    async fn open_change(&self, req: &ChangeRequest) -> Result<Change, ForgeError>;
    /// Merges the change if its head is still `head_sha`; merging a merged change returns it.
    async fn merge(
        &self,
        change: &Change,
        head_sha: &str,
        method: crate::state::spec::MergeMethod,
    ) -> Result<Change, ForgeError>;

    /// The change's reviews (a forge without reviews has none).
    async fn reviews(&self, _change: &Change) -> Result<Reviews, ForgeError> {
        Ok(Reviews::default())
    }

    /// Finds the run of image-build `workflow` for `head_sha` on `branch` of `repo`
    /// (`owner/name`), dispatching it when there is none and `dispatch` is true.
    async fn build_image(
        &self,
        _repo: &str,
        _workflow: &str,
        _branch: &str,
        _head_sha: &str,
        _dispatch: bool,
    ) -> Result<ImageBuild, ForgeError> {
        Err(ForgeError::Config(
            "image builds need forge: {kind: github} (a GitHub Actions workflow)".into(),
        ))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    next: u64,
    changes: Vec<Change>,
}

/// The local forge; its book of changes is `<dir>/changes.json`.
#[derive(Debug)]
pub struct LocalForge {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl LocalForge {
    /// A forge keeping its records in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            lock: Mutex::new(()),
        }
    }

    fn book_path(&self) -> PathBuf {
        self.dir.join("changes.json")
    }

    /// Every change recorded, for people and tests.
    pub fn changes(&self) -> Vec<Change> {
        self.load().map(|b| b.changes).unwrap_or_default()
    }

    fn load(&self) -> Result<Book, ForgeError> {
        match std::fs::read_to_string(self.book_path()) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| ForgeError::Storage(e.to_string())),
            Err(_) => Ok(Book::default()),
        }
    }

    fn save(&self, book: &Book) -> Result<(), ForgeError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ForgeError::Storage(e.to_string()))?;
        let text =
            serde_json::to_string_pretty(book).map_err(|e| ForgeError::Storage(e.to_string()))?;
        crate::fsutil::write_atomic(&self.book_path(), text.as_bytes(), None)
            .map_err(|e| ForgeError::Storage(e.to_string()))
    }
}

fn merge_into_base(origin: &Path, change: &Change, head_sha: &str) -> Result<String, ForgeError> {
    let g = Git::new(origin)
        .with_env("GIT_AUTHOR_NAME", "gaffer")
        .with_env("GIT_AUTHOR_EMAIL", "gaffer@localhost")
        .with_env("GIT_COMMITTER_NAME", "gaffer")
        .with_env("GIT_COMMITTER_EMAIL", "gaffer@localhost");
    let base_ref = format!("refs/heads/{}", change.base);
    let base = g.run(["rev-parse", "--verify", &base_ref])?;
    let head = g.run([
        "rev-parse",
        "--verify",
        &format!("refs/heads/{}", change.head_branch),
    ])?;
    if head != head_sha {
        return Err(ForgeError::Blocked(format!(
            "the head of {} moved to {} (expected {head_sha})",
            change.head_branch,
            &head[..12.min(head.len())]
        )));
    }
    if g.run(["merge-base", "--is-ancestor", &head, &base]).is_ok() {
        // Already merged (a previous attempt got this far).
        return Ok(base);
    }
    let tree = g
        .run(["merge-tree", "--write-tree", &base, &head])
        .map_err(|e| {
            ForgeError::Blocked(format!("conflicts merging {}: {e}", change.head_branch))
        })?;
    let tree = tree.lines().next().unwrap_or_default().to_string();
    let msg = format!(
        "Merge {} (#{}): {}",
        change.head_branch, change.number, change.title
    );
    let commit = g.run(["commit-tree", &tree, "-p", &base, "-p", &head, "-m", &msg])?;
    g.run(["update-ref", &base_ref, &commit, &base])?;
    Ok(commit)
}

#[async_trait::async_trait]
impl Forge for LocalForge {
    async fn open_change(&self, req: &ChangeRequest) -> Result<Change, ForgeError> {
        let head = push_branch(&req.mirror, &req.head_branch)?;
        let _guard = self
            .lock
            .lock()
            .map_err(|_| ForgeError::Storage("lock poisoned".into()))?;
        let mut book = self.load()?;
        if let Some(c) = book.changes.iter_mut().find(|c| {
            c.repo_url == req.repo_url
                && c.head_branch == req.head_branch
                // An open change is updated; a merged one is the same change only if it
                // merged exactly this head (a crash after merging, before recording it).
                // New work on a reused branch name gets a new change.
                && (c.state == "open" || (c.state == "merged" && c.head_sha == head))
        }) {
            c.head_sha = head;
            let c = c.clone();
            self.save(&book)?;
            return Ok(c);
        }
        book.next += 1;
        let change = Change {
            number: book.next,
            repo_url: req.repo_url.clone(),
            head_branch: req.head_branch.clone(),
            base: req.base.clone(),
            title: req.title.clone(),
            state: "open".into(),
            head_sha: head,
            merge_commit: None,
            url: format!("{}#change-{}", req.repo_url, book.next),
            repo: None,
        };
        book.changes.push(change.clone());
        self.save(&book)?;
        Ok(change)
    }

    /// Always a merge commit (the method is GitHub's business).
    async fn merge(
        &self,
        change: &Change,
        head_sha: &str,
        _method: crate::state::spec::MergeMethod,
    ) -> Result<Change, ForgeError> {
        let _guard = self
            .lock
            .lock()
            .map_err(|_| ForgeError::Storage("lock poisoned".into()))?;
        let mut book = self.load()?;
        let Some(c) = book.changes.iter_mut().find(|c| c.number == change.number) else {
            return Err(ForgeError::Storage(format!("no change #{}", change.number)));
        };
        if c.state == "merged" {
            return Ok(c.clone());
        }
        let commit = merge_into_base(Path::new(&c.repo_url), c, head_sha)?;
        c.state = "merged".into();
        c.merge_commit = Some(commit);
        let c = c.clone();
        self.save(&book)?;
        Ok(c)
    }
}
