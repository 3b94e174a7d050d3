//! The state at the remote's head, advanced one commit range at a time.
//!
//! A wake-up diffs the old and new head trees and re-reads only the changed files, so its
//! cost is O(changed files) whatever the size of the repository or its history. The objects
//! it wakes come from the commits in the range: commits authored by this process's own
//! writer are skipped for the files that writer owns (its own status updates never wake
//! work), while every other writer's changes in the same range still wake theirs.

use std::collections::BTreeSet;

use gix::ObjectId;

use super::read::{diff_trees, load_full, read_entry, tree_of};
use super::{GixResultExt, StoreError};
use crate::state::path::{ObjectKey, StatePath, Writer};
use crate::state::snapshot::Snapshot;

/// The result of moving to a new head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wake {
    /// The head now loaded.
    pub head: Option<ObjectId>,
    /// Objects whose spec or status changed through someone else.
    pub keys: BTreeSet<ObjectKey>,
    /// Files re-read.
    pub changed_files: usize,
    /// Commits in the range.
    pub commits: usize,
    /// Whether the whole tree was reloaded.
    pub full: bool,
    /// Whether the new head does not contain the old one (history was rewritten).
    pub force_pushed: bool,
}

/// Keeps a [`Snapshot`] at the remote's head.
#[derive(Debug)]
pub struct Tracker {
    head: Option<ObjectId>,
    snapshot: Snapshot,
    own_email: Option<String>,
    own_writer: Option<Writer>,
}

/// Beyond this many commits in one range, per-commit attribution is skipped and every
/// changed file wakes (a very long gap means a resync anyway).
const MAX_ATTRIBUTED_COMMITS: usize = 2_000;

impl Tracker {
    /// A tracker that recognises its own commits by `own_email` and owns `own_writer`'s files.
    pub fn new(own_email: Option<String>, own_writer: Option<Writer>) -> Self {
        Self {
            head: None,
            snapshot: Snapshot::default(),
            own_email,
            own_writer,
        }
    }

    /// The head currently loaded.
    pub fn head(&self) -> Option<ObjectId> {
        self.head
    }

    /// The state at [`Self::head`].
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Reloads everything at `head`; every object is woken.
    pub fn resync(
        &mut self,
        repo: &gix::Repository,
        head: Option<ObjectId>,
    ) -> Result<Wake, StoreError> {
        // Drop the old snapshot before loading the new one, so both never coexist.
        self.snapshot = Snapshot::default();
        self.snapshot = match head {
            Some(h) => load_full(repo, h)?,
            None => Snapshot::default(),
        };
        self.head = head;
        let mut keys = BTreeSet::new();
        keys.insert(ObjectKey::Settings);
        for (p, pe) in &self.snapshot.projects {
            keys.insert(ObjectKey::Project(p.clone()));
            for t in pe.tasks.keys() {
                keys.insert(ObjectKey::Task(crate::names::TaskRef {
                    project: p.clone(),
                    task: t.clone(),
                }));
            }
        }
        Ok(Wake {
            head,
            changed_files: self.snapshot.file_count(),
            keys,
            full: true,
            ..Wake::default()
        })
    }

    /// Moves to `new_head`, re-reading only what changed.
    pub fn advance(
        &mut self,
        repo: &gix::Repository,
        new_head: Option<ObjectId>,
    ) -> Result<Wake, StoreError> {
        if new_head == self.head {
            return Ok(Wake {
                head: new_head,
                ..Wake::default()
            });
        }
        let (Some(old), Some(new)) = (self.head, new_head) else {
            return self.resync(repo, new_head);
        };
        if is_ancestor(repo, new, old)? {
            // A reader that fetched earlier than another but locked later: the head it read
            // is already contained in ours. Never move backwards.
            return Ok(Wake {
                head: self.head,
                ..Wake::default()
            });
        }
        if !is_ancestor(repo, old, new)? {
            let mut wake = self.resync(repo, new_head)?;
            wake.force_pushed = true;
            return Ok(wake);
        }
        let changes = diff_trees(repo, Some(tree_of(repo, old)?), tree_of(repo, new)?)?;
        for c in &changes {
            match &c.new {
                Some((kind, id)) => match read_entry(repo, *kind, *id)? {
                    Some(content) => {
                        self.snapshot.upsert(&c.path, &content);
                    }
                    None => self.snapshot.remove(&c.path),
                },
                None => self.snapshot.remove(&c.path),
            }
        }
        let (keys, commits) = self.woken_keys(repo, old, new, &changes)?;
        self.head = new_head;
        Ok(Wake {
            head: new_head,
            keys,
            changed_files: changes.len(),
            commits,
            full: false,
            force_pushed: false,
        })
    }

    fn is_own_file(&self, path: &str) -> bool {
        match (self.own_writer, StatePath::parse(path)) {
            (Some(w), Ok(Some(sp))) => sp.owner() == w,
            _ => false,
        }
    }

    fn woken_keys(
        &self,
        repo: &gix::Repository,
        old: ObjectId,
        new: ObjectId,
        changes: &[super::read::PathChange],
    ) -> Result<(BTreeSet<ObjectKey>, usize), StoreError> {
        let key_of = |path: &str| match StatePath::parse(path) {
            Ok(Some(sp)) => Some(sp.object()),
            _ => None,
        };
        let all = |changes: &[super::read::PathChange]| -> BTreeSet<ObjectKey> {
            changes.iter().filter_map(|c| key_of(&c.path)).collect()
        };
        let Some(email) = &self.own_email else {
            return Ok((all(changes), 0));
        };
        let Some(commits) = commits_in_range(repo, old, new)? else {
            return Ok((all(changes), MAX_ATTRIBUTED_COMMITS));
        };
        let mut own = Vec::new();
        let mut foreign = Vec::new();
        for id in &commits {
            let c = repo.find_commit(*id).gix("find commit")?;
            let author = c.author().gix("commit author")?;
            if author.email == email.as_str() {
                own.push(*id);
            } else {
                foreign.push(*id);
            }
        }
        if own.is_empty() {
            return Ok((all(changes), commits.len()));
        }
        let mut keys = BTreeSet::new();
        for id in own.iter().chain(&foreign) {
            let c = repo.find_commit(*id).gix("find commit")?;
            let parent_tree = match c.parent_ids().next() {
                Some(p) => Some(tree_of(repo, p.detach())?),
                None => None,
            };
            let is_own = own.contains(id);
            for ch in diff_trees(repo, parent_tree, tree_of(repo, *id)?)? {
                if is_own && self.is_own_file(&ch.path) {
                    continue;
                }
                if let Some(k) = key_of(&ch.path) {
                    keys.insert(k);
                }
            }
        }
        Ok((keys, commits.len()))
    }
}

/// The commits in `(old, new]`, newest first, or None when there are too many to attribute.
/// A linear history (the usual case) is walked by first parents, which touches only the
/// commits in the range; merges fall back to a full revision walk.
fn commits_in_range(
    repo: &gix::Repository,
    old: ObjectId,
    new: ObjectId,
) -> Result<Option<Vec<ObjectId>>, StoreError> {
    let mut out = Vec::new();
    let mut cur = new;
    while cur != old {
        if out.len() >= MAX_ATTRIBUTED_COMMITS {
            return Ok(None);
        }
        let c = repo.find_commit(cur).gix("find commit")?;
        let mut parents = c.parent_ids();
        let first = parents.next().map(|p| p.detach());
        if parents.next().is_some() {
            // A merge: let the revision walk work out what is new.
            let walk = repo
                .rev_walk([new])
                .with_hidden([old])
                .all()
                .gix("walk commits")?;
            let mut all = Vec::new();
            for info in walk {
                all.push(info.gix("walk commit")?.id);
                if all.len() > MAX_ATTRIBUTED_COMMITS {
                    return Ok(None);
                }
            }
            return Ok(Some(all));
        }
        out.push(cur);
        match first {
            Some(p) => cur = p,
            None => break,
        }
    }
    Ok(Some(out))
}

/// Whether `ancestor` is reachable from `descendant`.
pub fn is_ancestor(
    repo: &gix::Repository,
    ancestor: ObjectId,
    descendant: ObjectId,
) -> Result<bool, StoreError> {
    if ancestor == descendant {
        return Ok(true);
    }
    match repo.merge_base(ancestor, descendant) {
        Ok(Some(base)) => Ok(base.detach() == ancestor),
        Ok(None) => Ok(false),
        Err(e) => Err(StoreError::Gix(format!("merge base: {e}"))),
    }
}
