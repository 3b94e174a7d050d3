//! `gaffer validate`: load a state-repository working tree from disk and report problems.
//!
//! Reading is defensive: symlinks are reported rather than followed, files are never read
//! past the size limit, and file names that are not UTF-8 are reported by their lossy form.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::state::snapshot::{Problem, RawContent, Snapshot};
use crate::state::yaml::MAX_FILE_BYTES;

/// The result of validating a tree.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether no problems were found.
    pub valid: bool,
    /// Files looked at (outside `.git`).
    pub files_checked: usize,
    /// Every problem, in path order.
    pub problems: Vec<Problem>,
}

impl Report {
    /// The closing line of the text output.
    pub fn summary(&self) -> String {
        if self.valid {
            format!("ok: {} files checked, no problems", self.files_checked)
        } else {
            let files: std::collections::BTreeSet<&str> =
                self.problems.iter().map(|p| p.path.as_str()).collect();
            format!(
                "{} problem{} in {} file{} ({} files checked)",
                self.problems.len(),
                if self.problems.len() == 1 { "" } else { "s" },
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                self.files_checked
            )
        }
    }
}

/// Files read from a tree, and problems that stopped files from being read at all.
pub type Loaded = (Vec<(String, RawContent)>, Vec<Problem>);

/// Reads every file under `root` (skipping `.git`) as repository-relative paths.
/// Problems that stop a file from being read at all are returned separately.
pub fn load_dir(root: &Path) -> std::io::Result<Loaded> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    walk(root, "", &mut files, &mut problems)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((files, problems))
}

fn walk(
    dir: &Path,
    prefix: &str,
    files: &mut Vec<(String, RawContent)>,
    problems: &mut Vec<Problem>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            problems.push(Problem::file(
                format!("{prefix}{}", name.to_string_lossy()),
                "file name is not valid UTF-8",
            ));
            continue;
        };
        if prefix.is_empty() && name_str == ".git" {
            continue;
        }
        let rel = format!("{prefix}{name_str}");
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            files.push((
                rel,
                RawContent::Symlink(target.to_string_lossy().into_owned()),
            ));
        } else if meta.is_dir() {
            walk(&path, &format!("{rel}/"), files, problems)?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_BYTES as u64 {
                files.push((rel, RawContent::Oversize(meta.len())));
                continue;
            }
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            std::fs::File::open(&path)?
                .take(MAX_FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)?;
            files.push((rel, RawContent::Blob(bytes)));
        } else {
            problems.push(Problem::file(rel, "not a regular file"));
        }
    }
    Ok(())
}

/// Validates the working tree at `root`.
pub fn validate_dir(root: &Path) -> std::io::Result<Report> {
    let (files, problems) = load_dir(root)?;
    Ok(report(files, problems))
}

/// Validates files read from a tree (repository-relative paths), with the problems found
/// while reading it.
pub fn report(files: Vec<(String, RawContent)>, mut problems: Vec<Problem>) -> Report {
    let count = files.len() + problems.len();
    let snapshot = Snapshot::from_files(files);
    problems.extend(snapshot.all_problems());
    problems.sort();
    problems.dedup();
    Report {
        valid: problems.is_empty(),
        files_checked: count,
        problems,
    }
}
