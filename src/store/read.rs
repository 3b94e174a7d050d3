//! Reading state out of git objects: whole trees (full resync) and tree diffs (wake-ups).

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;

use super::{GixResultExt, StoreError};
use crate::state::snapshot::{ParsedFile, RawContent, Snapshot, parse_file};
use crate::state::yaml::MAX_FILE_BYTES;

/// One path that differs between two trees, with its new blob (None when deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChange {
    /// Repository-relative path.
    pub path: String,
    /// The new entry, or None when the path was deleted.
    pub new: Option<(EntryKind, ObjectId)>,
}

/// The tree of a commit.
pub fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, StoreError> {
    let c = repo.find_commit(commit).gix("find commit")?;
    Ok(c.tree_id().gix("commit tree")?.detach())
}

/// The bytes of `path` in `commit`, if it is a file there.
pub fn read_file(
    repo: &gix::Repository,
    commit: ObjectId,
    path: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let tree = repo.find_tree(tree_of(repo, commit)?).gix("find tree")?;
    let Some(entry) = tree.lookup_entry_by_path(path).gix("look up path")? else {
        return Ok(None);
    };
    if !entry.mode().is_blob() {
        return Ok(None);
    }
    Ok(Some(
        repo.find_blob(entry.object_id())
            .gix("read blob")?
            .data
            .clone(),
    ))
}

/// Reads one entry into [`RawContent`], without reading blobs over the size limit.
pub fn read_entry(
    repo: &gix::Repository,
    kind: EntryKind,
    id: ObjectId,
) -> Result<Option<RawContent>, StoreError> {
    match kind {
        EntryKind::Blob | EntryKind::BlobExecutable => {
            let header = repo.find_header(id).gix("blob header")?;
            if header.size() > MAX_FILE_BYTES as u64 {
                return Ok(Some(RawContent::Oversize(header.size())));
            }
            let blob = repo.find_blob(id).gix("read blob")?;
            Ok(Some(RawContent::Blob(blob.data.clone())))
        }
        EntryKind::Link => {
            let blob = repo.find_blob(id).gix("read symlink")?;
            Ok(Some(RawContent::Symlink(
                blob.data.to_str_lossy().into_owned(),
            )))
        }
        // Submodules and trees are not state files.
        EntryKind::Commit | EntryKind::Tree => Ok(None),
    }
}

/// Loads every file of `commit` into a new snapshot. Reading and parsing are spread over
/// the machine's cores; inserting into the snapshot is sequential.
pub fn load_full(repo: &gix::Repository, commit: ObjectId) -> Result<Snapshot, StoreError> {
    let tree = repo.find_tree(tree_of(repo, commit)?).gix("find tree")?;
    let mut rec = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut rec).gix("walk tree")?;
    let entries: Vec<_> = rec
        .records
        .into_iter()
        .filter(|e| e.mode.kind() != EntryKind::Tree)
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = entries.len().div_ceil(threads).max(1);
    let shared = repo.clone().into_sync();
    let parsed: Vec<Result<Vec<ParsedFile>, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                let shared = &shared;
                scope.spawn(move || {
                    let repo = shared.to_thread_local();
                    let mut out = Vec::with_capacity(part.len());
                    for entry in part {
                        let path = entry.filepath.to_str_lossy();
                        if let Some(content) = read_entry(&repo, entry.mode.kind(), entry.oid)? {
                            out.push(parse_file(&path, &content));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Gix("a loader thread panicked".into())))
            })
            .collect()
    });
    let mut snapshot = Snapshot::default();
    for part in parsed {
        for file in part? {
            snapshot.apply(file);
        }
    }
    Ok(snapshot)
}

/// The paths that differ between two trees (renames are plain delete + add).
pub fn diff_trees(
    repo: &gix::Repository,
    old_tree: Option<ObjectId>,
    new_tree: ObjectId,
) -> Result<Vec<PathChange>, StoreError> {
    let empty = ObjectId::empty_tree(repo.object_hash());
    let old = repo
        .find_tree(old_tree.unwrap_or(empty))
        .gix("find old tree")?;
    let new = repo.find_tree(new_tree).gix("find new tree")?;
    let mut rec = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        gix::objs::TreeRefIter::from_bytes(&old.data, repo.object_hash()),
        gix::objs::TreeRefIter::from_bytes(&new.data, repo.object_hash()),
        gix::diff::tree::State::default(),
        &repo.objects,
        &mut rec,
    )
    .gix("diff trees")?;
    let mut out = Vec::with_capacity(rec.records.len());
    for change in rec.records {
        use gix::diff::tree::recorder::Change;
        match change {
            Change::Addition {
                entry_mode,
                oid,
                path,
                ..
            }
            | Change::Modification {
                entry_mode,
                oid,
                path,
                ..
            } => {
                if entry_mode.is_tree() {
                    continue;
                }
                out.push(PathChange {
                    path: path.to_str_lossy().into_owned(),
                    new: Some((entry_mode.kind(), oid)),
                });
            }
            Change::Deletion {
                entry_mode, path, ..
            } => {
                if entry_mode.is_tree() {
                    continue;
                }
                out.push(PathChange {
                    path: path.to_str_lossy().into_owned(),
                    new: None,
                });
            }
        }
    }
    Ok(out)
}
