//! [`Hosted`]: each project's workspaces where its builder runs — on gaffer's disk
//! ([`Workspaces`]) or in its builder pod ([`RemoteWorkspace`]), chosen by `agent.host`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::remote::RemoteWorkspace;
use super::{Workspace, WorkspaceError, Workspaces};
use crate::names::{ProjectRef, RepoName, TaskRef};
use crate::state::spec::ProjectSpec;

/// The workspaces of every project: on gaffer's disk, or in the project's builder pod
/// (`agent.host: pod`) when a cluster is configured.
#[derive(Debug, Clone)]
pub struct Hosted {
    /// Worktrees on gaffer's disk.
    pub local: Workspaces,
    /// Worktrees in builder pods.
    pub remote: Option<RemoteWorkspace>,
}

impl Hosted {
    fn of(&self, spec: &ProjectSpec) -> &dyn Workspace {
        match (&self.remote, spec.on_pod()) {
            (Some(r), true) => r,
            _ => &self.local,
        }
    }
}

impl Workspace for Hosted {
    fn local_dir(&self, p: &ProjectRef, spec: &ProjectSpec) -> PathBuf {
        self.of(spec).local_dir(p, spec)
    }
    fn builder_dir(&self, p: &ProjectRef, spec: &ProjectSpec) -> PathBuf {
        self.of(spec).builder_dir(p, spec)
    }
    fn mirror_dir(&self, url: &str) -> PathBuf {
        self.local.mirror_dir(url)
    }
    fn repo_git_dir(
        &self,
        p: &ProjectRef,
        spec: &ProjectSpec,
        repo: &crate::state::spec::RepoSpec,
    ) -> PathBuf {
        self.of(spec).repo_git_dir(p, spec, repo)
    }
    fn builder_dirs(&self, p: &ProjectRef, spec: &ProjectSpec) -> Vec<PathBuf> {
        self.of(spec).builder_dirs(p, spec)
    }
    fn warm(&self, p: &ProjectRef, spec: &ProjectSpec) -> Result<bool, WorkspaceError> {
        self.of(spec).warm(p, spec)
    }
    fn prepare(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, crate::state::status::RepoStatus>, WorkspaceError> {
        self.of(spec).prepare(task, spec)
    }
    fn checkpoint(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
        message: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.of(spec).checkpoint(task, spec, message)
    }
    fn changed_files(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
        bases: &BTreeMap<RepoName, String>,
    ) -> Result<Vec<String>, WorkspaceError> {
        self.of(spec).changed_files(task, spec, bases)
    }
    fn branch_off(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
        branch: &str,
    ) -> Result<(String, BTreeMap<RepoName, String>), WorkspaceError> {
        self.of(spec).branch_off(task, spec, branch)
    }
    fn confirm(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
        parent: &str,
        branch: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.of(spec).confirm(task, spec, parent, branch)
    }
    fn set_aside(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
        parent: &str,
        branch: &str,
        points: &BTreeMap<RepoName, String>,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.of(spec).set_aside(task, spec, parent, branch, points)
    }
    fn heads(
        &self,
        task: &TaskRef,
        spec: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.of(spec).heads(task, spec)
    }
    fn sync_local(&self, task: &TaskRef, spec: &ProjectSpec) -> Result<PathBuf, WorkspaceError> {
        self.of(spec).sync_local(task, spec)
    }
    fn export(&self, task: &TaskRef, spec: &ProjectSpec) -> Result<(), WorkspaceError> {
        self.of(spec).export(task, spec)
    }
}
