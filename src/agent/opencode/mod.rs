//! The real builder: one OpenCode server per project in tmux, driven over its HTTP API.
//!
//! Per project (`{category}-{project}`) gaffer keeps a *builder*: the tmux session
//! `gaffer-{category}-{project}` whose window `server` runs `opencode serve` on a port of
//! 127.0.0.1 in the project's workspace, and whose window `attach` runs `opencode attach` on
//! the session gaffer drives, so a person can watch and type. The builder's port, the time
//! its server started and its sessions are recorded in `<data>/opencode/<builder>.json`; its
//! password (HTTP Basic, random per builder) only in `<builder>.env`, mode 0600, which the
//! processes read through `gaffer exec-env` so it never appears on a command line.
//!
//! What the agent did is derived from OpenCode's stored session history ([`history`]); the
//! event stream (`GET /event`) only wakes the task, so a gap in it (reconnects, gaffer or
//! OpenCode restarts) loses nothing. A dead server is started again on the same data and
//! port; a turn it cut off is reported as [`Polled::interrupted`] for the reconciler to
//! resume with a prompt.

pub mod client;
mod files;
pub mod follow;
pub mod history;
mod ids;
mod server;
mod tails;
pub mod tmux;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use self::client::Client;
use self::files::*;
pub use self::files::{exec_env, last_event, password_of};
use self::follow::*;
use self::history::{LOST_PREFIX, Live};
use self::ids::has_prompt;
pub use self::ids::{message_id, prompt_suffix};
pub use self::tails::remove_tail_file;
use super::{AgentError, AgentRuntime, BuilderSetup, Polled, Reply, Session, SessionRequest};
use crate::agent::host::BuilderHost;
use crate::names::{ProjectRef, TaskRef};
use crate::state::status::HostKind;

/// Wakes a task's reconcile when its session did something.
pub type WakeTask = Arc<dyn Fn(&TaskRef) + Send + Sync>;

pub use crate::agent::host::{ATTACH_WINDOW, SERVER_WINDOW};

/// How to run builders.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `opencode` binary (pin `opencode-ai@1.18.33`).
    pub binary: PathBuf,
    /// gaffer's own executable, which starts processes with the builder's environment
    /// (`gaffer exec-env`).
    pub launcher: PathBuf,
    /// Builder records and passwords (`<data>/opencode`).
    pub state_dir: PathBuf,
    /// Where builders run by default (tmux on this machine).
    pub host: Arc<dyn BuilderHost>,
    /// Where `agent.host: pod` builders run, when a cluster is configured.
    pub pod: Option<Arc<crate::agent::pod::host::PodHost>>,
    /// Extra environment for OpenCode processes (tests point HOME and XDG_* at a temp dir).
    pub env: Vec<(String, String)>,
    /// bubblewrap, when it works here (`None`: builders run unsandboxed, with a warning).
    pub bwrap: Option<PathBuf>,
    /// How long a server may take to answer after it starts.
    pub start_timeout: Duration,
}

/// What is recorded about a builder (everything but the password).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The project.
    pub project: String,
    /// The tmux session.
    pub tmux: String,
    /// The server's port.
    pub port: u16,
    /// When the current server process started (ms since the epoch).
    pub started_ms: i64,
    /// The session the `attach` window shows.
    #[serde(default)]
    pub attached: Option<String>,
    /// Sessions by task.
    #[serde(default)]
    pub sessions: BTreeMap<String, SessionRecord>,
    /// Stopped on purpose (`cancel`): not restarted until a task needs it.
    #[serde(default)]
    pub stopped: bool,
    /// The sandbox the server runs in (none when unsandboxed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::agent::sandbox::Sandbox>,
    /// Where the server runs.
    #[serde(default = "tmux", skip_serializing_if = "is_tmux")]
    pub host: HostKind,
    /// The server process last seen, where its host restarts it by itself (a pod's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

fn tmux() -> HostKind {
    HostKind::Tmux
}

fn is_tmux(h: &HostKind) -> bool {
    *h == HostKind::Tmux
}

/// A session gaffer drives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `ses_…`.
    pub id: String,
    /// `provider/model`.
    #[serde(default)]
    pub model: Option<String>,
    /// The OpenCode agent.
    #[serde(default)]
    pub agent: Option<String>,
}

#[derive(Debug)]
struct Builder {
    project: ProjectRef,
    project_dir: PathBuf,
    record: Record,
    password: String,
    follower: Option<tokio::task::JoinHandle<()>>,
    /// The start time of the server process last warmed up (its first prompt's loading
    /// done ahead), so a second warm start of the same process does nothing.
    warmed_ms: i64,
}

impl Drop for Builder {
    fn drop(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
    }
}

/// The OpenCode runtime; cheap to clone.
#[derive(Clone)]
pub struct OpenCode(Arc<Inner>);

/// What an [`OpenCode`] runtime holds.
pub struct Inner {
    cfg: Config,
    workspaces: PathBuf,
    builders: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Builder>>>>,
    /// Session id → task, for routing events.
    tasks: Arc<Mutex<HashMap<String, TaskRef>>>,
    wake: Option<WakeTask>,
    /// Session id → its settled start ([`history::Tail`]).
    tails: Mutex<HashMap<String, history::Tail>>,
}

impl std::ops::Deref for OpenCode {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for OpenCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCode").field("cfg", &self.cfg).finish()
    }
}

fn runtime(e: impl std::fmt::Display) -> AgentError {
    AgentError::Runtime(e.to_string())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl OpenCode {
    /// A runtime whose project workspaces live under `workspaces`
    /// (`<workspaces>/{category}-{project}`), waking tasks through `wake`.
    pub fn new(cfg: Config, workspaces: impl Into<PathBuf>, wake: Option<WakeTask>) -> Self {
        Self(Arc::new(Inner {
            cfg,
            workspaces: workspaces.into(),
            builders: Mutex::new(HashMap::new()),
            tasks: Arc::new(Mutex::new(HashMap::new())),
            wake,
            tails: Mutex::new(HashMap::new()),
        }))
    }

    /// [`Inner::ensure_server`] in a task of its own, so a caller that gives up (a poll
    /// abandoned for a person's decision) never leaves a server half started: the start
    /// goes on, holding the builder's lock, and the next caller finds it done.
    async fn server(&self, project: &ProjectRef) -> Result<(Client, i64), AgentError> {
        let inner = self.0.clone();
        let project = project.clone();
        tokio::spawn(async move { inner.ensure_server(&project).await })
            .await
            .map_err(runtime)?
    }
}

/// How long a server whose process is alive may take to answer before it is restarted.
const SLOW_SERVER_PATIENCE: Duration = Duration::from_secs(30);

impl Inner {
    fn builder(
        &self,
        project: &ProjectRef,
    ) -> Result<Arc<tokio::sync::Mutex<Builder>>, AgentError> {
        let name = project.builder_name();
        let mut map = self
            .builders
            .lock()
            .map_err(|_| runtime("builder map poisoned"))?;
        if let Some(b) = map.get(&name) {
            return Ok(b.clone());
        }
        let record = read_record(&self.cfg.state_dir, &name)?.unwrap_or_else(|| Record {
            project: project.to_string(),
            tmux: project.tmux_session(),
            ..Record::default()
        });
        let password = ensure_env_file(&self.cfg, &name)?;
        let b = Arc::new(tokio::sync::Mutex::new(Builder {
            project: project.clone(),
            project_dir: self.workspaces.join(&name),
            record,
            password,
            follower: None,
            warmed_ms: 0,
        }));
        map.insert(name, b.clone());
        Ok(b)
    }

    fn remember(&self, session: &str, task: &TaskRef) {
        if let Ok(mut m) = self.tasks.lock() {
            m.insert(session.to_string(), task.clone());
        }
    }

    async fn session_record(&self, task: &TaskRef) -> Result<Option<SessionRecord>, AgentError> {
        let b = self.builder(&task.project)?;
        let b = b.lock().await;
        Ok(b.record.sessions.get(task.task.as_str()).cloned())
    }

    async fn live(
        &self,
        client: &Client,
        session: &str,
        started_ms: i64,
    ) -> Result<Live, AgentError> {
        let statuses = client.statuses().await?;
        let questions = client.questions().await?;
        let permissions = client.permissions().await?;
        Ok(Live {
            busy: statuses.get(session).is_some_and(|s| s.kind != "idle"),
            server_started_ms: started_ms,
            questions: questions
                .into_iter()
                .filter(|q| q.session_id == session)
                .collect(),
            permissions: permissions
                .into_iter()
                .filter(|p| p.session_id == session)
                .collect(),
        })
    }

    /// Sends `text` unless a message for `prompt_id` is already in the session.
    async fn prompt(
        &self,
        client: &Client,
        task: &TaskRef,
        session: &str,
        prompt_id: &str,
        text: &str,
    ) -> Result<(), AgentError> {
        if has_prompt(client, session, prompt_id).await? {
            return Ok(());
        }
        let rec = self.session_record(task).await?.unwrap_or_default();
        let mut body = json!({
            "messageID": message_id(prompt_id),
            "parts": [{"type": "text", "text": text}],
        });
        if let Some((provider, model)) = rec.model.as_deref().and_then(|m| m.split_once('/')) {
            body["model"] = json!({"providerID": provider, "modelID": model});
        }
        if let Some(agent) = &rec.agent {
            body["agent"] = json!(agent);
        }
        client.prompt(session, &body).await?;
        tracing::info!(%task, session, prompt_id, "prompt sent");
        Ok(())
    }
}

#[async_trait::async_trait]
impl AgentRuntime for OpenCode {
    fn kind(&self) -> crate::state::spec::RuntimeKind {
        crate::state::spec::RuntimeKind::Opencode
    }

    fn wakes(&self) -> bool {
        self.wake.is_some()
    }

    fn warms(&self) -> bool {
        true
    }

    async fn warm(&self, setup: &BuilderSetup) -> Result<bool, AgentError> {
        if self.builder(&setup.project)?.lock().await.record.stopped {
            return Ok(false);
        }
        self.set_up(setup).await?;
        let (client, started_ms) = self.server(&setup.project).await?;
        let b = self.builder(&setup.project)?;
        if b.lock().await.warmed_ms == started_ms {
            return Ok(true);
        }
        client.warm_up().await?;
        b.lock().await.warmed_ms = started_ms;
        Ok(true)
    }

    async fn suspend(&self, project: &ProjectRef) -> Result<bool, AgentError> {
        let b = self.builder(project)?;
        let mut b = b.lock().await;
        let host = self.host_of(&b.record)?;
        let running = if b.record.host == HostKind::Pod {
            host.base_url(project, b.record.port).await?.is_some()
        } else {
            b.record.port != 0 && host.is_alive(project).await.unwrap_or(false)
        };
        if !running {
            return Ok(false);
        }
        tracing::info!(builder = %b.project.builder_name(), "stopping the idle OpenCode server");
        if let Some(f) = b.follower.take() {
            f.abort();
        }
        host.stop(project).await?;
        Ok(true)
    }

    async fn start_host(&self, setup: &BuilderSetup) -> Result<(), AgentError> {
        if setup.pod.is_some() {
            self.set_up(setup).await?;
        }
        Ok(())
    }

    async fn ensure_session(
        &self,
        req: &SessionRequest,
        existing: Option<&str>,
    ) -> Result<Session, AgentError> {
        let recorded = self
            .set_up(&req.builder)
            .await?
            .sessions
            .get(&req.session_key())
            .map(|s| s.id.clone());
        // A session made just before a crash, before the task's status recorded it, is in
        // the builder's own record: found again, not made twice (its prompts are recognised
        // in its history, so nothing is sent twice either).
        let existing = existing.or(recorded.as_deref());
        let (client, _) = self.server(&req.task.project).await?;
        let stage = match req.stage {
            crate::agent::Stage::Plan => " (plan)",
            crate::agent::Stage::Build => "",
        };
        // The title carries the task's key: a session made just before a crash, before any
        // record of it was written, is found by it and not made twice.
        let key = format!("gaffer {}{stage}: ", req.task);
        let live = match existing {
            Some(id) if client.session_exists(id).await? => Some(id.to_string()),
            _ => None,
        };
        let orphan = match live {
            Some(_) => None,
            None => client
                .sessions()
                .await?
                .into_iter()
                .filter(|(_, title, _)| title.starts_with(&key))
                .max_by_key(|(_, _, created)| *created)
                .map(|(id, _, _)| id),
        };
        let id = match (live, orphan) {
            (Some(id), _) => id,
            (None, Some(id)) => {
                tracing::info!(task = %req.task, session = %id, "found the task's session made before a crash; not making another");
                id
            }
            _ => {
                let mut body = json!({
                    "title": format!("{key}{}", req.title),
                });
                if let Some(agent) = &req.agent {
                    body["agent"] = json!(agent);
                }
                if let Some((provider, model)) =
                    req.model.as_deref().and_then(|m| m.split_once('/'))
                {
                    body["model"] = json!({"providerID": provider, "id": model});
                }
                if !req.permissions.is_empty() {
                    body["permission"] = serde_json::to_value(&req.permissions).map_err(runtime)?;
                }
                let id = client.create_session(&body).await?;
                tracing::info!(task = %req.task, session = %id, "OpenCode session created");
                crate::crash::point("session:created");
                id
            }
        };
        self.remember(&id, &req.task);
        let name = req.task.project.builder_name();
        let b = self.builder(&req.task.project)?;
        let mut b = b.lock().await;
        b.record.sessions.insert(
            req.session_key(),
            SessionRecord {
                id: id.clone(),
                model: req.model.clone(),
                agent: req.agent.clone(),
            },
        );
        let argv = self.attach_argv(&name, b.record.port, &id, &b.project_dir);
        let other = b.record.attached.as_deref() != Some(id.as_str());
        let host = self.host_of(&b.record)?;
        host.ensure_attach(&req.task.project, &b.project_dir, &argv, other)
            .await?;
        b.record.attached = Some(id.clone());
        write_record(&self.cfg.state_dir, &name, &b.record)?;
        Ok(Session {
            id,
            host: host.kind(),
            attach: host.attach(&req.task.project),
            sandboxed: Some(b.record.sandbox.is_some() || host.isolates()),
        })
    }

    async fn send(
        &self,
        task: &TaskRef,
        session: &str,
        prompt_id: &str,
        text: &str,
    ) -> Result<(), AgentError> {
        let (client, _) = self.server(&task.project).await?;
        self.remember(session, task);
        self.prompt(&client, task, session, prompt_id, text).await
    }

    async fn delivered(
        &self,
        task: &TaskRef,
        session: &str,
        prompt_id: &str,
    ) -> Result<bool, AgentError> {
        let (client, _) = self.server(&task.project).await?;
        has_prompt(&client, session, prompt_id).await
    }

    async fn poll(&self, task: &TaskRef, session: &str, cursor: u64) -> Result<Polled, AgentError> {
        let (client, started) = self.server(&task.project).await?;
        self.remember(session, task);
        let live = self.live(&client, session, started).await?;
        let (tail, messages) = match self.unsettled(&client, session).await {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Some(404) | Some(400)) => {
                return Err(AgentError::NoSession(session.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        // The cursor is what the reconciler recorded: nothing past it is settled, so a crash
        // before the events below are recorded derives them again.
        let derived = history::derive_after(&tail, &messages, &live, history::consumed(cursor));
        self.keep_tail(session, &derived.tail);
        let mut next = cursor;
        let events = derived
            .events
            .into_iter()
            .filter(|(pos, _)| *pos > cursor)
            .map(|(pos, e)| {
                next = next.max(pos);
                e
            })
            .collect();
        let usage = derived
            .usage
            .into_iter()
            .filter(|(pos, _, _)| *pos > cursor)
            .map(|(pos, at, u)| {
                next = next.max(pos);
                (at, u)
            })
            .collect();
        Ok(Polled {
            events,
            cursor: next,
            waiting: derived.waiting,
            interrupted: derived.interrupted,
            usage,
        })
    }

    async fn answer(
        &self,
        task: &TaskRef,
        session: &str,
        reply: &Reply<'_>,
    ) -> Result<(), AgentError> {
        let (client, _) = self.server(&task.project).await?;
        let id = reply.request_id;
        if id.starts_with("per") {
            let choice = reply.choice.first().map(String::as_str).unwrap_or("reject");
            let choice = match choice {
                "once" | "always" | "reject" => choice,
                _ => "reject",
            };
            return match client.reply_permission(id, choice).await {
                // Gone: answered already, or forgotten in a restart (the tool call then
                // failed, and the agent sees that in its history).
                Err(e) if e.status() == Some(404) => Ok(()),
                r => r.map_err(Into::into),
            };
        }
        let (request, part) = match id.split_once('#') {
            Some((r, i)) => (r, i.parse::<usize>().ok()),
            None => (id, None),
        };
        if request.starts_with("que") {
            let pending = client.questions().await?;
            if let Some(q) = pending.iter().find(|q| q.id == request) {
                let n = q.questions.len();
                let answers = match part {
                    None => vec![reply.choice.to_vec()],
                    Some(i) => {
                        // Several questions in one request: OpenCode takes the answers together,
                        // so keep each until all are in.
                        let mut parts = read_parts(&self.cfg.state_dir, request)?;
                        parts.insert(i, reply.choice.to_vec());
                        write_parts(&self.cfg.state_dir, request, &parts)?;
                        if parts.len() < n {
                            return Ok(());
                        }
                        (0..n)
                            .map(|i| parts.get(&i).cloned().unwrap_or_default())
                            .collect()
                    }
                };
                match client.reply_question(request, &answers).await {
                    Err(e) if e.status() != Some(404) => return Err(e.into()),
                    _ => {}
                }
                if let Some(note) = reply.note {
                    self.prompt(
                        &client,
                        task,
                        session,
                        &format!("note-{id}"),
                        &format!(
                            "A note from the person who answered \"{}\": {note}",
                            reply.question
                        ),
                    )
                    .await?;
                }
                return Ok(());
            }
            // Not pending: answered already (the call completed), or forgotten by a restart.
            let messages = client.messages(session).await?;
            if history::question_answered(&messages, reply.question) {
                return Ok(());
            }
        } else if !id.starts_with(LOST_PREFIX) {
            return Err(AgentError::Config(format!("unknown request id {id:?}")));
        }
        let mut text = format!(
            "Your question \"{}\" was lost when OpenCode restarted. The answer is: {}.",
            reply.question,
            reply.choice.join(", ")
        );
        if let Some(note) = reply.note {
            text.push_str(&format!(" Note: {note}"));
        }
        text.push_str(" Carry on with this answer.");
        self.prompt(&client, task, session, &format!("answer-{id}"), &text)
            .await
    }

    async fn summary(&self, task: &TaskRef, session: &str) -> Result<String, AgentError> {
        let (client, started) = self.server(&task.project).await?;
        let todos = client.todos(session).await.unwrap_or_default();
        let done = todos.iter().filter(|t| t.status == "completed").count();
        let left = todos
            .iter()
            .filter(|t| t.status == "pending" || t.status == "in_progress")
            .count();
        let live = Live {
            busy: true,
            server_started_ms: started,
            ..Live::default()
        };
        let (tail, messages) = self.unsettled(&client, session).await?;
        let latest = history::derive_after(&tail, &messages, &live, 0).latest_text;
        let mut s = format!("todos {done} done, {left} left");
        let latest = last_lines(&latest, 3);
        if !latest.is_empty() {
            s.push_str(&format!("; latest: {latest}"));
        }
        Ok(s)
    }

    async fn interrupt(&self, task: &TaskRef, session: &str) -> Result<(), AgentError> {
        let (client, _) = self.server(&task.project).await?;
        match client.abort(session).await {
            Err(e) if !matches!(e.status(), Some(404) | Some(400)) => return Err(e.into()),
            _ => {}
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while client
            .statuses()
            .await?
            .get(session)
            .is_some_and(|s| s.kind != "idle")
        {
            if tokio::time::Instant::now() > deadline {
                return Err(runtime(format!(
                    "session {session} did not stop after abort"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn stop(&self, task: &TaskRef, session: &str) -> Result<(), AgentError> {
        self.forget_tail(session);
        let b = self.builder(&task.project)?;
        let mut b = b.lock().await;
        let host = self.host_of(&b.record)?;
        let Some(base) = host.base_url(&b.project, b.record.port).await? else {
            return Ok(());
        };
        let client = Client::at(&base, &b.password);
        if client.health_within(Duration::from_secs(5)).await.is_err() {
            return Ok(());
        }
        match client.abort(session).await {
            Err(e) if !matches!(e.status(), Some(404) | Some(400)) => return Err(e.into()),
            _ => {}
        }
        // Stop the server too when nothing else of the project is working.
        let others_busy = client
            .statuses()
            .await?
            .iter()
            .any(|(id, s)| id != session && s.kind != "idle");
        if !others_busy {
            tracing::info!(builder = %b.project.builder_name(), "stopping OpenCode");
            if let Some(f) = b.follower.take() {
                f.abort();
            }
            host.stop(&b.project).await?;
            b.record.stopped = true;
            write_record(&self.cfg.state_dir, &b.project.builder_name(), &b.record)?;
        }
        Ok(())
    }
}
