//! The reconciler: turns the state repository's spec into actions and records what happened.
//!
//! [`runtime`] is the controller loop (queue, backoff, concurrency); [`task`] is the task
//! lifecycle, one idempotent step per reconcile; [`Context`] holds the connectors as trait
//! objects. The rule for every external effect is in docs/reconciler.md.

pub mod daemon;
pub mod metrics;
pub mod runtime;
pub mod task;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::agent::Agents;
use crate::chat::Notifier;
use crate::forge::Forge;
use crate::hours::Clock;
use crate::lab::{LabDeployer, TestRunner};
use crate::store::{StatusWriter, StoreError, Tracker, Transport};
use crate::workspace::Workspaces;

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
    /// The forge.
    #[error(transparent)]
    Forge(#[from] crate::forge::ForgeError),
    /// A notifier.
    #[error(transparent)]
    Notify(#[from] crate::chat::NotifyError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ReconcileError {
    /// A short reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Store(_) => "store",
            ReconcileError::Workspace(_) => "workspace",
            ReconcileError::Agent(_) => "agent",
            ReconcileError::Lab(_) => "lab",
            ReconcileError::Forge(_) => "forge",
            ReconcileError::Notify(_) => "notify",
            ReconcileError::Other(_) => "other",
        }
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Settings {
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
}

/// Everything a reconcile needs.
#[derive(Debug)]
pub struct Context {
    /// The state remote.
    pub transport: Transport,
    /// The state at the remote's head.
    pub tracker: Arc<RwLock<Tracker>>,
    /// The reconciler's status writer.
    pub writer: StatusWriter,
    /// The coding agents.
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
    /// Worktrees.
    pub workspaces: Workspaces,
    /// The clock (injected in tests).
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Settings,
    /// Schedules other objects (a finished task wakes its project's queue).
    pub scheduler: runtime::Scheduler,
    /// Metrics for `/metrics`.
    pub metrics: Arc<metrics::ReconcileMetrics>,
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
                ReconcileError::Other(
                    "the project uses forge: github, but gaffer reconcile has no GitHub token: \
                     set GITHUB_TOKEN or GITHUB_TOKEN_FILE"
                        .into(),
                )
            }),
        }
    }

    /// Advances the tracker to the remote's head, so the next step sees what was just written.
    pub async fn refresh(&self) -> Result<(), ReconcileError> {
        let transport = self.transport.clone();
        let tracker = self.tracker.clone();
        let keys = tokio::task::spawn_blocking(move || -> Result<std::collections::BTreeSet<crate::state::path::ObjectKey>, StoreError> {
            let head = transport.head()?;
            let repo = transport.repo();
            let mut t = tracker
                .write()
                .map_err(|_| StoreError::WriterStopped("tracker lock poisoned".into()))?;
            if t.head() == head {
                return Ok(Default::default());
            }
            Ok(t.advance(&repo, head)?.keys)
        })
        .await
        .map_err(|e| ReconcileError::Other(e.to_string()))??;
        // Someone else's commits may have come in with ours: their objects still wake.
        self.dispatch(&keys);
        Ok(())
    }

    /// Schedules the reconciles a set of changed objects calls for: a task wakes itself, a
    /// project wakes its tasks, `gaffer.yaml` wakes every task.
    pub fn dispatch(&self, keys: &std::collections::BTreeSet<crate::state::path::ObjectKey>) {
        use crate::state::path::ObjectKey;
        let Ok(tracker) = self.tracker.read() else {
            return;
        };
        let snap = tracker.snapshot();
        for key in keys {
            self.metrics.woken(key);
            match key {
                ObjectKey::Task(_) => self.scheduler.now(key.clone()),
                ObjectKey::Project(p) => {
                    if let Some(pe) = snap.projects.get(p) {
                        for t in pe.tasks.keys() {
                            let k = ObjectKey::Task(crate::names::TaskRef {
                                project: p.clone(),
                                task: t.clone(),
                            });
                            self.metrics.woken(&k);
                            self.scheduler.now(k);
                        }
                    }
                }
                ObjectKey::Settings => {
                    for (t, _) in snap.tasks() {
                        let k = ObjectKey::Task(t);
                        self.metrics.woken(&k);
                        self.scheduler.now(k);
                    }
                }
            }
        }
    }
}
