//! Reaching the state remote.
//!
//! A remote that is a local bare repository (the embedded default made by `gaffer init`) is
//! opened directly: reading needs no fetch, and publishing a commit is a compare-and-swap of
//! the branch ref with git's own lock protocol, so it is safe next to concurrent `git push`es
//! and needs no push at all. Any other remote (ssh, https, or `--transport git`) is mirrored
//! into a bare clone in the data dir; `git fetch` and `git push --porcelain` keep it in sync,
//! with credentials from the user's ordinary git configuration.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::refs::transaction::PreviousValue;

use super::{GixResultExt, StoreError};
use crate::git::{Git, PushOutcome};

/// How gaffer reaches the state remote.
#[derive(Debug, Clone)]
pub struct Transport {
    kind: Kind,
    remote: String,
    branch: String,
}

#[derive(Debug, Clone)]
enum Kind {
    /// The remote is a bare repository on this machine, opened in place.
    Direct { repo: gix::ThreadSafeRepository },
    /// A bare clone in the data dir, synced with the git binary.
    Clone {
        repo: gix::ThreadSafeRepository,
        path: PathBuf,
    },
}

/// What a [`Transport::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The remote branch now points at the commit.
    Yes,
    /// Someone else moved the branch first; fetch, rebuild, retry.
    Rejected(String),
}

fn open(path: &Path) -> Result<gix::ThreadSafeRepository, StoreError> {
    // Room for more packs than the clone is allowed to gather (see [`compact`]): gix loads
    // a pack's index into a slot fixed when the repository is opened, and objects in a pack
    // beyond the last slot are never found.
    let slots = gix::odb::store::init::Slots::AsNeededByDiskState {
        multiplier: 2.0,
        minimum: 2 * MAX_PACKS,
    };
    let opts = gix::open::Options::isolated()
        .strict_config(false)
        .object_store_slots(slots);
    gix::ThreadSafeRepository::open_opts(path, opts).gix(&format!("open {}", path.display()))
}

/// Whether gix fetches `remote` itself: file paths and ssh. https stays with the `git`
/// binary, which has the user's credential helpers.
fn in_process(remote: &str) -> bool {
    gix::url::parse(gix::bstr::BStr::new(remote))
        .is_ok_and(|u| matches!(u.scheme, gix::url::Scheme::File | gix::url::Scheme::Ssh))
}

/// Fetches `refspec` from `remote` into `repo` (the clone) with gix, through the object
/// store the clone is read with. gix runs with gaffer's isolated configuration: plain `ssh`
/// (whose own `~/.ssh/config` applies); a remote that needs git's `core.sshCommand` or
/// `url.*.insteadOf` fails here and is fetched by `git fetch` instead.
fn fetch_in_process(repo: &gix::Repository, remote: &str, refspec: &str) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    remote_in_process(repo, remote, refspec)?
        .connect(gix::remote::Direction::Fetch)
        .map_err(|x| e(&x))?
        .prepare_fetch(
            gix::progress::Discard,
            gix::remote::ref_map::Options::default(),
        )
        .map_err(|x| e(&x))?
        .receive(
            gix::progress::Discard,
            &std::sync::atomic::AtomicBool::new(false),
        )
        .map_err(|x| e(&x))?;
    Ok(())
}

/// Packs the clone may gather before [`compact`] repacks it: every in-process fetch that
/// brings objects writes one (`git fetch` unpacks small fetches into loose objects instead).
const MAX_PACKS: usize = 32;

/// Runs `git gc --auto` on the clone when it has more than [`MAX_PACKS`] packs or, by git's
/// own estimate (objects in `objects/17`), more than 6,700 loose objects; otherwise spawns
/// nothing.
fn compact(path: &Path) -> Result<(), StoreError> {
    let count = |dir: &str, ext: Option<&str>| {
        std::fs::read_dir(path.join(dir)).map_or(0, |r| {
            r.flatten()
                .filter(|e| ext.is_none_or(|x| e.path().extension().is_some_and(|y| y == x)))
                .count()
        })
    };
    if count("objects/pack", Some("pack")) > MAX_PACKS || count("objects/17", None) > 27 {
        Git::new(path).run([
            "-c",
            &format!("gc.autoPackLimit={MAX_PACKS}"),
            "-c",
            "gc.autoDetach=false",
            "gc",
            "--auto",
            "--quiet",
        ])?;
    }
    Ok(())
}

/// The remote's `branch` head, asked in process (`ls-remote`: no objects are fetched).
fn ls_remote_in_process(
    repo: &gix::Repository,
    remote: &str,
    branch: &str,
) -> Result<Option<ObjectId>, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (refs, _) = remote_in_process(repo, remote, &format!("refs/heads/{branch}"))?
        .connect(gix::remote::Direction::Fetch)
        .map_err(|x| e(&x))?
        .ref_map(
            gix::progress::Discard,
            gix::remote::ref_map::Options::default(),
        )
        .map_err(|x| e(&x))?;
    Ok(refs
        .mappings
        .iter()
        .find_map(|m| m.remote.as_id().map(|id| id.to_owned())))
}

/// `remote` for `refspec` only, without tags.
fn remote_in_process<'r>(
    repo: &'r gix::Repository,
    remote: &str,
    refspec: &str,
) -> Result<gix::Remote<'r>, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    repo.remote_at(remote)
        .map_err(|x| e(&x))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs([refspec], gix::remote::Direction::Fetch)
        .map_err(|x| e(&x))
}

/// Whether `remote` names a bare repository on this machine.
pub fn local_bare_repo(remote: &str) -> Option<PathBuf> {
    let path = remote.strip_prefix("file://").unwrap_or(remote);
    let p = Path::new(path);
    (p.is_absolute() || path.starts_with('.'))
        .then(|| p.canonicalize().ok())
        .flatten()
        .filter(|p| p.join("HEAD").is_file() && p.join("objects").is_dir())
}

impl Transport {
    /// Opens the remote in place when it is a local bare repository (unless `force_clone`),
    /// otherwise creates or reuses a bare clone under `data_dir`.
    pub fn open(
        remote: &str,
        branch: &str,
        data_dir: &Path,
        force_clone: bool,
    ) -> Result<Self, StoreError> {
        crate::names::check(crate::names::NameKind::Id, &branch.replace('/', "-")).map_err(
            |e| StoreError::NoBranch {
                remote: remote.into(),
                branch: format!("{branch} ({e})"),
            },
        )?;
        if !force_clone && let Some(path) = local_bare_repo(remote) {
            return Ok(Self {
                kind: Kind::Direct { repo: open(&path)? },
                remote: path.display().to_string(),
                branch: branch.into(),
            });
        }
        let path = data_dir.join("state.git");
        if !path.join("HEAD").is_file() {
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
            Git::new(&path).run(["init", "--quiet", "--bare"])?;
        }
        let t = Self {
            kind: Kind::Clone {
                repo: open(&path)?,
                path,
            },
            remote: remote.into(),
            branch: branch.into(),
        };
        t.fetch()?;
        Ok(t)
    }

    /// The remote as given (canonical path for local repositories).
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// The branch holding the state.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Whether the remote is opened in place.
    pub fn is_direct(&self) -> bool {
        matches!(self.kind, Kind::Direct { .. })
    }

    /// The directory to watch for ref changes, for local remotes.
    pub fn watch_dir(&self) -> Option<PathBuf> {
        match &self.kind {
            Kind::Direct { repo } => Some(repo.git_dir().to_path_buf()),
            Kind::Clone { .. } => local_bare_repo(&self.remote),
        }
    }

    /// A thread-local handle to the repository gaffer reads from.
    pub fn repo(&self) -> gix::Repository {
        let mut repo = match &self.kind {
            Kind::Direct { repo } | Kind::Clone { repo, .. } => repo.to_thread_local(),
        };
        repo.object_cache_size_if_unset(4 * 1024 * 1024);
        repo
    }

    /// The ref that holds the state head in [`Self::repo`].
    pub fn head_ref(&self) -> String {
        match &self.kind {
            Kind::Direct { .. } => format!("refs/heads/{}", self.branch),
            Kind::Clone { .. } => format!("refs/remotes/origin/{}", self.branch),
        }
    }

    /// The state head as last seen (no network).
    pub fn head(&self) -> Result<Option<ObjectId>, StoreError> {
        let repo = self.repo();
        let r = repo
            .try_find_reference(self.head_ref().as_str())
            .gix("read ref")?;
        match r {
            Some(mut r) => Ok(Some(r.peel_to_id().gix("peel ref")?.detach())),
            None => Ok(None),
        }
    }

    /// Brings the remote's branch in (a no-op for local remotes) and returns the head.
    ///
    /// File and ssh remotes are fetched in process with gix (one `git-upload-pack` or `ssh`
    /// process, no `git fetch` around it); https remotes, and any fetch gix fails at, with
    /// the `git` binary and the user's credential helpers.
    pub fn fetch(&self) -> Result<Option<ObjectId>, StoreError> {
        if let Kind::Clone { path, .. } = &self.kind {
            let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
            if in_process(&self.remote) {
                match fetch_in_process(&self.repo(), &self.remote, &refspec) {
                    Ok(()) => {
                        compact(path)?;
                        return self.head();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "in-process fetch failed; running git fetch")
                    }
                }
            }
            Git::new(path).run([
                "fetch",
                "--quiet",
                "--no-tags",
                "--prune",
                &self.remote,
                &refspec,
            ])?;
        }
        self.head()
    }

    /// The remote's branch head without fetching objects (`git ls-remote`), for polling.
    pub fn remote_head(&self) -> Result<Option<String>, StoreError> {
        match &self.kind {
            Kind::Direct { .. } => Ok(self.head()?.map(|id| id.to_string())),
            Kind::Clone { path, .. } => {
                if in_process(&self.remote) {
                    match ls_remote_in_process(&self.repo(), &self.remote, &self.branch) {
                        Ok(head) => return Ok(head.map(|id| id.to_string())),
                        Err(e) => {
                            tracing::debug!(error = %e, "in-process ls-remote failed; running git ls-remote")
                        }
                    }
                }
                let out = Git::new(path).run([
                    "ls-remote",
                    &self.remote,
                    &format!("refs/heads/{}", self.branch),
                ])?;
                Ok(out.split_whitespace().next().map(str::to_string))
            }
        }
    }

    /// Makes `commit` (whose first parent is `base`) the remote's head, as a fast-forward.
    /// Never forces: if the branch moved, the answer is [`Published::Rejected`].
    pub fn publish(
        &self,
        commit: ObjectId,
        base: Option<ObjectId>,
    ) -> Result<Published, StoreError> {
        let expected = match base {
            Some(b) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(b)),
            None => PreviousValue::MustNotExist,
        };
        match &self.kind {
            Kind::Direct { .. } => {
                let repo = self.repo();
                match repo.reference(
                    self.head_ref().as_str(),
                    commit,
                    expected,
                    "gaffer: publish",
                ) {
                    Ok(_) => Ok(Published::Yes),
                    // A lock held by a concurrent push or a moved ref: both mean "retry".
                    // A lock left by a crashed writer is cleared once it is clearly stale.
                    Err(e) => {
                        crate::git::remove_stale_locks(
                            repo.git_dir(),
                            std::time::Duration::from_secs(2),
                        );
                        Ok(Published::Rejected(e.to_string()))
                    }
                }
            }
            Kind::Clone { path, .. } => {
                let remote_ref = format!("refs/heads/{}", self.branch);
                match Git::new(path).push(&self.remote, &commit.to_string(), &remote_ref)? {
                    PushOutcome::Pushed => {
                        // Move our tracking ref too, unless a fetch already moved it further.
                        let _ = self.repo().reference(
                            self.head_ref().as_str(),
                            commit,
                            expected,
                            "gaffer: pushed",
                        );
                        Ok(Published::Yes)
                    }
                    PushOutcome::Rejected(why) => Ok(Published::Rejected(why)),
                }
            }
        }
    }
}
