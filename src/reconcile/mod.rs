//! The reconciler: turns the state repository's spec into actions and records what happened.
//!
//! [`runtime`] is the controller loop (queue, backoff, concurrency); [`task`] is the task
//! lifecycle, one phase per file, one idempotent step per reconcile; [`Context`] holds the
//! state store and the connectors as trait objects. The rule for every external effect is in docs/reconciler.md.

pub mod daemon;
pub mod lease;
pub mod metrics;
pub mod project;
pub mod runtime;
pub mod task;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agents;
use crate::chat::Notifier;
use crate::forge::Forge;
use crate::hours::Clock;
use crate::lab::{LabDeployer, TestRunner};
use crate::state::path::ObjectKey;
use crate::store::{Store, StoreError};
use crate::workspace::Workspace;

pub use runtime::Action;

/// Errors of a reconcile step; the runtime retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The state repository.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The workspace.
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    /// The agent runtime.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// The lab.
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    /// Setting up the builder's own lab access.
    #[error("lab access for the builder: {0}")]
    BuilderAccess(#[source] crate::lab::LabError),
    /// The forge.
    #[error(transparent)]
    Forge(#[from] crate::forge::ForgeError),
    /// A notifier.
    #[error(transparent)]
    Notify(#[from] crate::chat::NotifyError),
    /// Writing a status file.
    #[error(transparent)]
    Yaml(#[from] crate::state::yaml::YamlError),
    /// A name made from parts (a question id, a batch) is invalid.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// Business hours (a deadline).
    #[error(transparent)]
    Hours(#[from] crate::hours::HoursError),
    /// A prompt template.
    #[error("prompt template: {0}")]
    Prompt(#[from] minijinja::Error),
    /// The pull request body template.
    #[error("pull request body: {0}")]
    PullRequestBody(String),
    /// The task has no agent session to talk to.
    #[error("no agent session: {0}")]
    NoSession(String),
    /// The workspace lacks a repo or a head the step needs.
    #[error("workspace: {0}")]
    NoWorkspace(String),
    /// A story task's `task.yaml` could not be written.
    #[error("story task: {0}")]
    StoryTask(String),
    /// The project's forge is not configured in this reconciler.
    #[error("{0}")]
    ForgeMissing(String),
    /// Blocking work panicked or was cancelled.
    #[error("background work: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// Starting the reconciler.
    #[error("{0}")]
    Startup(String),
}

impl ReconcileError {
    /// A short reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Store(_) => "store",
            ReconcileError::Workspace(_) | ReconcileError::NoWorkspace(_) => "workspace",
            ReconcileError::Agent(_) | ReconcileError::NoSession(_) => "agent",
            ReconcileError::Lab(_) | ReconcileError::BuilderAccess(_) => "lab",
            ReconcileError::Forge(_)
            | ReconcileError::ForgeMissing(_)
            | ReconcileError::PullRequestBody(_) => "forge",
            ReconcileError::Notify(_) => "notify",
            ReconcileError::Yaml(_)
            | ReconcileError::StoryTask(_)
            | ReconcileError::Name(_)
            | ReconcileError::Hours(_)
            | ReconcileError::Prompt(_)
            | ReconcileError::Join(_)
            | ReconcileError::Startup(_) => "other",
        }
    }
}

/// Tunables of the reconciler itself (not of the state repository's `gaffer.yaml`).
#[derive(Debug, Clone)]
pub struct Tunables {
    /// How often a running agent is polled when nothing wakes the task.
    pub poll_interval: Duration,
    /// Test failures sent back to the agent before the task fails.
    pub max_test_retries: u32,
    /// The pause before retrying after a transient agent error (doubled each attempt).
    pub retry_pause: Duration,
    /// Where rendered manifests and other local records go.
    pub data_dir: PathBuf,
    /// How often a change in review is polled for reviews when no webhook wakes it.
    pub forge_poll: Duration,
    /// Why builders cannot be sandboxed here (bubblewrap missing, or no user namespaces,
    /// as in most restricted pods); `None` when they can. A project that asks for the
    /// sandbox then waits instead of running without it.
    pub no_sandbox: Option<String>,
}

/// Everything a reconcile needs.
#[derive(Debug)]
pub struct Context {
    /// The state repository: read, write, history.
    pub store: Arc<dyn Store>,
    /// The coding agents, by kind.
    pub agents: Agents,
    /// Chat notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Review and merge: the local forge.
    pub forge: Arc<dyn Forge>,
    /// GitHub, when a token was given.
    pub github: Option<Arc<dyn Forge>>,
    /// Deploys.
    pub lab: Arc<dyn LabDeployer>,
    /// Lab tests.
    pub tests: Arc<dyn TestRunner>,
    /// Builder pods (`agent.host: pod`), when the reconciler runs with a cluster.
    pub pods: Option<Arc<crate::agent::pod::host::PodHost>>,
    /// Where the worktrees live and how builders see them.
    pub workspaces: Arc<dyn Workspace>,
    /// The planner's files in a builder's workspace (BMAD and its output).
    pub planner: Arc<dyn crate::workspace::bmad::Planner>,
    /// The clock (injected in tests).
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Tunables,
    /// Schedules other objects (a finished task wakes its project's queue).
    pub scheduler: runtime::Scheduler,
    /// Metrics for `/metrics`.
    pub metrics: Arc<metrics::ReconcileMetrics>,
    /// Counts the state changes dispatched, so a reconcile waiting on something slow (a
    /// builder's history) can notice a person's decision arriving and see to it first.
    pub changes: tokio::sync::watch::Sender<u64>,
}

impl Context {
    /// The forge a project uses (`forge.kind`).
    pub fn forge_for(
        &self,
        project: &crate::state::spec::ProjectSpec,
    ) -> Result<Arc<dyn Forge>, ReconcileError> {
        match project.forge.as_ref().map(|f| f.kind).unwrap_or_default() {
            crate::state::spec::ForgeKind::Local => Ok(self.forge.clone()),
            crate::state::spec::ForgeKind::Github => self.github.clone().ok_or_else(|| {
                ReconcileError::ForgeMissing(
                    "the project uses forge: github, but gaffer reconcile has no GitHub token: \
                     set GITHUB_TOKEN or GITHUB_TOKEN_FILE"
                        .into(),
                )
            }),
        }
    }

    /// Schedules the reconciles a set of changed objects calls for: a task wakes itself, a
    /// project wakes itself and its tasks, `gaffer.yaml` wakes every task.
    pub fn dispatch(&self, keys: &BTreeSet<ObjectKey>) {
        if keys.is_empty() {
            return;
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        let mut woken = Vec::new();
        let read = self.store.read(&mut |_, snap| {
            for key in keys {
                match key {
                    ObjectKey::Task(_) => woken.push(key.clone()),
                    ObjectKey::Project(p) => {
                        // The project itself (its builder may start ahead of a task).
                        woken.push(key.clone());
                        if let Some(pe) = snap.projects.get(p) {
                            for t in pe.tasks.keys() {
                                woken.push(ObjectKey::Task(crate::names::TaskRef {
                                    project: p.clone(),
                                    task: t.clone(),
                                }));
                            }
                        }
                    }
                    ObjectKey::Settings => {
                        woken.extend(snap.tasks().map(|(t, _)| ObjectKey::Task(t)));
                    }
                }
            }
        });
        if read.is_err() {
            return;
        }
        for key in keys {
            if matches!(key, ObjectKey::Settings) {
                self.metrics.woken(key);
            }
        }
        for k in woken {
            self.metrics.woken(&k);
            self.scheduler.now(k);
        }
    }
}
