//! Agent runtimes: what actually does the coding.
//!
//! [`AgentRuntime`] is the connector trait the reconciler drives. Its shape follows OpenCode's
//! HTTP API (a session per task, prompts sent with a client-chosen id so a resend after a
//! crash is recognised, events read after a cursor, questions answered by request id), so
//! the real OpenCode runtime fits behind it. [`scripted::ScriptedAgent`] is the embedded
//! default used by `gaffer demo`: it plays a YAML script of steps in the task's worktrees.

pub mod host;
pub mod opencode;
pub mod pod;
pub mod sandbox;
pub mod scripted;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::names::{ProjectRef, RepoName, TaskRef};
use crate::state::spec::RuntimeKind;
use crate::state::status::QuestionOption;

/// What a project's builder is made of, whatever task it works on: where it works, what it
/// may touch, and the environment it starts with. A runtime started for a project ahead of
/// its first task (a warm start) is given the same, so the task's session finds it as
/// wanted and nothing is started twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderSetup {
    /// The project.
    pub project: ProjectRef,
    /// The project's workspace directory (`<builders>/{category}-{project}`).
    pub project_dir: PathBuf,
    /// Environment for the builder's processes: its lab access (`KUBECONFIG`,
    /// `LAB_NAMESPACE`, `LAB_URL`) and the credentials the project names (`agent.env_from`).
    pub env: Vec<(String, String)>,
    /// Whether the project wants its builder sandboxed (`agent.sandbox`).
    pub sandbox: bool,
    /// Directories besides its workspace the builder writes to (the git dirs its worktrees
    /// point into).
    pub builder_dirs: Vec<PathBuf>,
    /// Where it runs.
    pub host: crate::state::spec::BuilderHostKind,
    /// With `host: pod`: the pod's image, volume and resources.
    pub pod: Option<PodSetup>,
}

/// What a builder pod is made of, besides what every builder has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSetup {
    /// The image (gaffer's own).
    pub image: String,
    /// Volume, resources, idle suspension.
    pub spec: crate::state::spec::PodSpec,
}

/// Everything a runtime needs to start working on a task.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// The task.
    pub task: TaskRef,
    /// The task's title.
    pub title: String,
    /// Permission rules for the session (OpenCode's ruleset), from `project.yaml`.
    pub permissions: Vec<crate::state::spec::PermissionRule>,
    /// Each repo's worktree.
    pub worktrees: BTreeMap<RepoName, PathBuf>,
    /// `provider/model`, when configured.
    pub model: Option<String>,
    /// The OpenCode agent name, when configured.
    pub agent: Option<String>,
    /// For the scripted runtime: the script, as `<repo>/<path>` inside the workspace.
    pub script: Option<String>,
    /// The project's builder.
    pub builder: BuilderSetup,
    /// Which stage the session is for: a task has one planning session and one building
    /// session, each found again after a crash.
    pub stage: Stage,
}

/// The stage a session serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stage {
    /// Planning (BMAD), edits only under `_bmad-output/`.
    Plan,
    /// Building: today's lifecycle.
    #[default]
    Build,
}

impl SessionRequest {
    /// The key the session is recorded under in a builder: the task's name, with `.plan`
    /// for its planning session (a `.` never occurs in a task name).
    pub fn session_key(&self) -> String {
        match self.stage {
            Stage::Build => self.task.task.to_string(),
            Stage::Plan => format!("{}.plan", self.task.task),
        }
    }
}

/// A running (or resumable) session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session id, recorded in the task's status.
    pub id: String,
    /// Where the builder runs.
    pub host: crate::state::status::HostKind,
    /// How a person attaches to it (a command or a link), when they can.
    pub attach: Option<String>,
    /// Whether its tools run in a sandbox; `None` when it runs no tools of its own.
    pub sandboxed: Option<bool>,
}

/// What kind of request the agent made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AskKind {
    /// A question (OpenCode's `question` tool).
    #[default]
    Question,
    /// A permission request (OpenCode's `permission.asked`): options once/always/reject.
    Permission,
}

/// A question the agent asked.
#[derive(Debug, Clone, PartialEq)]
pub struct AskedQuestion {
    /// Question or permission.
    pub kind: AskKind,
    /// The runtime's request id (OpenCode `que_...`), used to answer.
    pub request_id: String,
    /// The question.
    pub text: String,
    /// A short header.
    pub header: String,
    /// The options; the recommended one is marked "(Recommended)" or comes first.
    pub options: Vec<QuestionOption>,
    /// Several options may be chosen.
    pub multiple: bool,
    /// Free text is accepted.
    pub custom: bool,
}

impl AskedQuestion {
    /// The recommended option: the one whose label ends in "(Recommended)", else the first.
    pub fn recommended(&self) -> String {
        self.options
            .iter()
            .find(|o| o.label.trim_end().ends_with("(Recommended)"))
            .or_else(|| self.options.first())
            .map(|o| o.label.clone())
            .unwrap_or_default()
    }
}

/// Something the agent did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// A todo item was completed.
    Todo(String),
    /// Files were written or edited (a checkpoint is due).
    Edited(Vec<String>),
    /// The agent asked a question and waits for the answer.
    Question(AskedQuestion),
    /// The agent says the task is done.
    Finished(String),
    /// The agent ended its turn without saying the task is done (its last text).
    TurnEnded(String),
    /// The agent stopped with an error.
    Failed {
        /// What went wrong.
        message: String,
        /// Whether retrying may help (rate limits, overload).
        retryable: bool,
    },
}

/// Events after a cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// New events, oldest first.
    pub events: Vec<AgentEvent>,
    /// The cursor after these events; pass it to the next poll.
    pub cursor: u64,
    /// Whether the agent is blocked on an unanswered question.
    pub waiting: bool,
    /// The runtime restarted under a turn that was in progress (the id of the interrupted
    /// message): the agent needs a prompt saying so to carry on.
    pub interrupted: Option<String>,
    /// What the model requests finished after the cursor used, each with when it finished
    /// (counted once: the cursor moves past them).
    pub usage: Vec<(jiff::Timestamp, crate::state::status::Usage)>,
}

/// A decision to hand to the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<'a> {
    /// The runtime's request id, as reported in [`AskedQuestion::request_id`].
    pub request_id: &'a str,
    /// The question's text (used when the runtime forgot the request and the answer has to
    /// go as a prompt).
    pub question: &'a str,
    /// The chosen labels (or the free text).
    pub choice: &'a [String],
    /// A person's note.
    pub note: Option<&'a str>,
}

/// Errors of agent runtimes.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The session does not exist (any more).
    #[error("no agent session {0}")]
    NoSession(String),
    /// The script or configuration is wrong.
    #[error("agent configuration: {0}")]
    Config(String),
    /// Talking to the runtime failed.
    #[error("agent runtime: {0}")]
    Runtime(String),
}

/// A coding agent the reconciler drives. Every method is safe to repeat after a crash.
///
/// Methods after [`AgentRuntime::ensure_session`] name the task as well as the session id,
/// so a runtime that keeps one server per project finds it again after gaffer restarts.
#[async_trait::async_trait]
pub trait AgentRuntime: Send + Sync + std::fmt::Debug {
    /// Which kind of runtime this is.
    fn kind(&self) -> RuntimeKind;

    /// Whether the runtime wakes tasks itself when something happens (so the reconciler only
    /// polls as a safety net).
    fn wakes(&self) -> bool {
        false
    }

    /// Whether [`AgentRuntime::warm`] starts anything.
    fn warms(&self) -> bool {
        false
    }

    /// Starts the project's builder ahead of its first task, so the task's first request
    /// does not wait for it; `Ok(false)` when this runtime has nothing to start (or the
    /// builder was stopped on purpose). The builder must come out exactly as
    /// [`AgentRuntime::ensure_session`] would make it for `builder`.
    async fn warm(&self, _builder: &BuilderSetup) -> Result<bool, AgentError> {
        Ok(false)
    }

    /// Readies the builder where it runs before its workspace is prepared: a builder pod's
    /// objects applied (its workspace lives on the pod's volume, reached through the pod).
    /// Nothing to do for a builder on gaffer's machine.
    async fn start_host(&self, _builder: &BuilderSetup) -> Result<(), AgentError> {
        Ok(())
    }

    /// Stops the project's builder while it has nothing to do (its tmux server stopped, or
    /// its pod scaled to zero; its data and volume kept); the next request starts it again
    /// on the same sessions. `Ok(false)` when nothing was running or the host cannot.
    async fn suspend(&self, _project: &ProjectRef) -> Result<bool, AgentError> {
        Ok(false)
    }

    /// Finds the session `existing` (recorded in status) or creates one.
    async fn ensure_session(
        &self,
        req: &SessionRequest,
        existing: Option<&str>,
    ) -> Result<Session, AgentError>;

    /// Sends a prompt; a second send with the same `prompt_id` does nothing.
    async fn send(
        &self,
        task: &TaskRef,
        session: &str,
        prompt_id: &str,
        text: &str,
    ) -> Result<(), AgentError>;

    /// Whether prompt `prompt_id` already reached the session (a step replayed after a crash
    /// asks before it repeats what came before the prompt).
    async fn delivered(
        &self,
        _task: &TaskRef,
        _session: &str,
        _prompt_id: &str,
    ) -> Result<bool, AgentError> {
        Ok(false)
    }

    /// Events after `cursor`.
    async fn poll(&self, task: &TaskRef, session: &str, cursor: u64) -> Result<Polled, AgentError>;

    /// Answers a question by its request id; answering twice does nothing.
    async fn answer(
        &self,
        task: &TaskRef,
        session: &str,
        reply: &Reply<'_>,
    ) -> Result<(), AgentError>;

    /// A few lines on where the work stands (todos done/left, the agent's latest text), for
    /// the periodic summary milestone.
    async fn summary(&self, _task: &TaskRef, _session: &str) -> Result<String, AgentError> {
        Ok(String::new())
    }

    /// Interrupts the turn in progress (the session and its server stay), returning once the
    /// agent has stopped.
    async fn interrupt(&self, _task: &TaskRef, _session: &str) -> Result<(), AgentError> {
        Ok(())
    }

    /// Stops the session's work (the session itself is kept).
    async fn stop(&self, task: &TaskRef, session: &str) -> Result<(), AgentError>;
}

/// The runtimes a reconciler has, registered by kind; a project picks one with
/// `agent.runtime`, and a task keeps the one its session was made with (recorded in its
/// status).
#[derive(Debug, Clone, Default)]
pub struct Agents {
    runtimes: BTreeMap<RuntimeKind, Arc<dyn AgentRuntime>>,
}

impl Agents {
    /// Adds (or replaces) the runtime of its kind.
    pub fn register(mut self, runtime: Arc<dyn AgentRuntime>) -> Self {
        self.runtimes.insert(runtime.kind(), runtime);
        self
    }

    /// The runtime of `kind`.
    pub fn get(&self, kind: RuntimeKind) -> Result<&Arc<dyn AgentRuntime>, AgentError> {
        self.runtimes.get(&kind).ok_or_else(|| match kind {
            RuntimeKind::Opencode => AgentError::Config(
                "the project uses runtime: opencode, but no OpenCode binary was found: install \
                 opencode-ai (npm install -g opencode-ai@1.18.33) or pass --opencode PATH"
                    .into(),
            ),
            other => AgentError::Config(format!(
                "agent runtime {other:?} is not available in this reconciler"
            )),
        })
    }
}
