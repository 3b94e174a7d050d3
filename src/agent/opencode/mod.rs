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
pub mod history;
pub mod tmux;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use self::client::Client;
use self::history::{LOST_PREFIX, Live};
use self::tmux::Tmux;
use super::{AgentError, AgentRuntime, Polled, Reply, Session, SessionRequest};
use crate::names::{ProjectRef, TaskRef};

/// Wakes a task's reconcile when its session did something.
pub type Wake = Arc<dyn Fn(&TaskRef) + Send + Sync>;

/// The window running the server.
pub const SERVER_WINDOW: &str = "server";
/// The window attached to the driven session.
pub const ATTACH_WINDOW: &str = "attach";

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
    /// The tmux server.
    pub tmux: Tmux,
    /// Extra environment for OpenCode processes (tests point HOME and XDG_* at a temp dir).
    pub env: Vec<(String, String)>,
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
}

impl Drop for Builder {
    fn drop(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
    }
}

/// The OpenCode runtime.
pub struct OpenCode {
    cfg: Config,
    workspaces: PathBuf,
    builders: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Builder>>>>,
    /// Session id → task, for routing events.
    tasks: Arc<Mutex<HashMap<String, TaskRef>>>,
    wake: Option<Wake>,
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
    pub fn new(cfg: Config, workspaces: impl Into<PathBuf>, wake: Option<Wake>) -> Self {
        Self {
            cfg,
            workspaces: workspaces.into(),
            builders: Mutex::new(HashMap::new()),
            tasks: Arc::new(Mutex::new(HashMap::new())),
            wake,
        }
    }

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
        }));
        map.insert(name, b.clone());
        Ok(b)
    }

    fn remember(&self, session: &str, task: &TaskRef) {
        if let Ok(mut m) = self.tasks.lock() {
            m.insert(session.to_string(), task.clone());
        }
    }

    /// Makes sure the project's server answers (adopting a running one, starting or restarting
    /// it otherwise) and returns a client and the server's start time.
    async fn ensure_server(&self, project: &ProjectRef) -> Result<(Client, i64), AgentError> {
        let b = self.builder(project)?;
        let mut b = b.lock().await;
        let name = project.builder_name();
        let client = Client::new(b.record.port, &b.password);
        if b.record.port != 0 {
            match client.health_within(Duration::from_secs(5)).await {
                Ok(h) if h.healthy => {
                    if b.record.stopped {
                        b.record.stopped = false;
                        write_record(&self.cfg.state_dir, &name, &b.record)?;
                    }
                    self.follow(&mut b, &client);
                    return Ok((client, b.record.started_ms));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(builder = %name, error = %e, "OpenCode server not answering")
                }
            }
        }
        self.start_server(&mut b).await?;
        let client = Client::new(b.record.port, &b.password);
        self.follow(&mut b, &client);
        Ok((client, b.record.started_ms))
    }

    async fn start_server(&self, b: &mut Builder) -> Result<(), AgentError> {
        let name = b.project.builder_name();
        let session = b.project.tmux_session();
        std::fs::create_dir_all(&b.project_dir)
            .map_err(|e| runtime(format!("{}: {e}", b.project_dir.display())))?;
        let port = if b.record.port != 0 && port_free(b.record.port) {
            b.record.port
        } else {
            free_port()?
        };
        let argv = self.launch(
            &name,
            [
                OsString::from(&self.cfg.binary),
                "serve".into(),
                "--hostname".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string().into(),
            ],
        );
        let tmux = &self.cfg.tmux;
        let started_ms = now_ms();
        if !tmux.has_session(&session).await? {
            tracing::info!(builder = %name, port, "starting OpenCode");
            tmux.new_session(&session, SERVER_WINDOW, &b.project_dir, &argv)
                .await?;
        } else if tmux.pane(&session, SERVER_WINDOW).await?.is_none() {
            tracing::info!(builder = %name, port, "starting OpenCode in the existing tmux session");
            tmux.new_window(&session, SERVER_WINDOW, &b.project_dir, &argv)
                .await?;
        } else {
            tracing::warn!(builder = %name, port, "restarting OpenCode");
            tmux.respawn(&session, SERVER_WINDOW, &b.project_dir, &argv)
                .await?;
        }
        let client = Client::new(port, &b.password);
        let deadline = tokio::time::Instant::now() + self.cfg.start_timeout;
        loop {
            if let Ok(h) = client.health_within(Duration::from_secs(1)).await
                && h.healthy
            {
                break;
            }
            if let Some(p) = tmux.pane(&session, SERVER_WINDOW).await?
                && p.dead
            {
                let screen = tmux
                    .capture(&session, SERVER_WINDOW)
                    .await
                    .unwrap_or_default();
                return Err(runtime(format!(
                    "OpenCode exited on start ({}): {}",
                    self.cfg.binary.display(),
                    last_lines(&screen, 6)
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(runtime(format!(
                    "OpenCode did not answer on port {port} within {:?}",
                    self.cfg.start_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        b.record.port = port;
        b.record.started_ms = started_ms;
        b.record.tmux = session.clone();
        b.record.stopped = false;
        // The attach window talked to the old process (or went with the tmux session): point
        // it at the new one.
        if let Some(id) = b.record.attached.clone() {
            let argv = self.attach_argv(&name, port, &id, &b.project_dir);
            if tmux.pane(&session, ATTACH_WINDOW).await?.is_some() {
                tmux.respawn(&session, ATTACH_WINDOW, &b.project_dir, &argv)
                    .await?;
            } else {
                tmux.new_window(&session, ATTACH_WINDOW, &b.project_dir, &argv)
                    .await?;
            }
        }
        write_record(&self.cfg.state_dir, &name, &b.record)?;
        if let Some(f) = b.follower.take() {
            f.abort();
        }
        Ok(())
    }

    /// `gaffer exec-env --env-file <builder>.env --env-file <builder>.lab.env -- <argv>`.
    fn launch<const N: usize>(&self, name: &str, argv: [OsString; N]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            self.cfg.launcher.clone().into(),
            "exec-env".into(),
            "--env-file".into(),
            env_path(&self.cfg.state_dir, name).into(),
            "--env-file".into(),
            lab_env_path(&self.cfg.state_dir, name).into(),
            "--".into(),
        ];
        v.extend(argv);
        v
    }

    fn attach_argv(&self, name: &str, port: u16, session: &str, dir: &Path) -> Vec<OsString> {
        self.launch(
            name,
            [
                OsString::from(&self.cfg.binary),
                "attach".into(),
                format!("http://127.0.0.1:{port}").into(),
                "--session".into(),
                session.into(),
                "--dir".into(),
                dir.into(),
            ],
        )
    }

    /// Follows the builder's event stream (once per server process).
    fn follow(&self, b: &mut Builder, client: &Client) {
        if b.follower.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        let follower = Follower {
            client: client.clone(),
            tasks: self.tasks.clone(),
            wake: self.wake.clone(),
            project: b.project.clone(),
            state_dir: self.cfg.state_dir.clone(),
        };
        b.follower = Some(tokio::spawn(follower.run()));
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
        let suffix = prompt_suffix(prompt_id);
        let messages = match client.messages(session).await {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Some(404) | Some(400)) => {
                return Err(AgentError::NoSession(session.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        if messages
            .iter()
            .any(|m| m.info.role == "user" && m.info.id.ends_with(&suffix))
        {
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

    /// The records of every builder in `state_dir` (for `gaffer builders`).
    pub fn records(state_dir: &Path) -> Result<Vec<Record>, AgentError> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(state_dir) else {
            return Ok(out);
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && let Some(r) = read_record(state_dir, stem)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(out)
    }

    /// A client for a recorded builder (for `gaffer builders`).
    pub fn client_for(state_dir: &Path, record: &Record) -> Option<Client> {
        let name = record.project.replace('/', "-");
        let env = std::fs::read_to_string(env_path(state_dir, &name)).ok()?;
        let password = env
            .lines()
            .find_map(|l| l.strip_prefix("OPENCODE_SERVER_PASSWORD="))?;
        Some(Client::new(record.port, password))
    }
}

#[async_trait::async_trait]
impl AgentRuntime for OpenCode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn wakes(&self) -> bool {
        self.wake.is_some()
    }

    async fn ensure_session(
        &self,
        req: &SessionRequest,
        existing: Option<&str>,
    ) -> Result<Session, AgentError> {
        let name = req.task.project.builder_name();
        write_lab_env(&self.cfg.state_dir, &name, &req.env)?;
        let (client, _) = self.ensure_server(&req.task.project).await?;
        let id = match existing {
            Some(id) if client.session_exists(id).await? => id.to_string(),
            _ => {
                let mut body = json!({
                    "title": format!("gaffer {}: {}", req.task, req.title),
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
                id
            }
        };
        self.remember(&id, &req.task);
        let name = req.task.project.builder_name();
        let session = req.task.project.tmux_session();
        let b = self.builder(&req.task.project)?;
        let mut b = b.lock().await;
        b.record.sessions.insert(
            req.task.task.to_string(),
            SessionRecord {
                id: id.clone(),
                model: req.model.clone(),
                agent: req.agent.clone(),
            },
        );
        let tmux = &self.cfg.tmux;
        let argv = self.attach_argv(&name, b.record.port, &id, &b.project_dir);
        match tmux.pane(&session, ATTACH_WINDOW).await? {
            None => {
                tmux.new_window(&session, ATTACH_WINDOW, &b.project_dir, &argv)
                    .await?
            }
            Some(p) if p.dead || b.record.attached.as_deref() != Some(id.as_str()) => {
                tmux.respawn(&session, ATTACH_WINDOW, &b.project_dir, &argv)
                    .await?
            }
            Some(_) => {}
        }
        b.record.attached = Some(id.clone());
        write_record(&self.cfg.state_dir, &name, &b.record)?;
        Ok(Session {
            id,
            port: Some(b.record.port),
            tmux: Some(session),
        })
    }

    async fn send(
        &self,
        task: &TaskRef,
        session: &str,
        prompt_id: &str,
        text: &str,
    ) -> Result<(), AgentError> {
        let (client, _) = self.ensure_server(&task.project).await?;
        self.remember(session, task);
        self.prompt(&client, task, session, prompt_id, text).await
    }

    async fn poll(&self, task: &TaskRef, session: &str, cursor: u64) -> Result<Polled, AgentError> {
        let (client, started) = self.ensure_server(&task.project).await?;
        self.remember(session, task);
        let live = self.live(&client, session, started).await?;
        let messages = match client.messages(session).await {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Some(404) | Some(400)) => {
                return Err(AgentError::NoSession(session.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let derived = history::derive(&messages, &live);
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
        Ok(Polled {
            events,
            cursor: next,
            waiting: derived.waiting,
            interrupted: derived.interrupted,
        })
    }

    async fn answer(
        &self,
        task: &TaskRef,
        session: &str,
        reply: &Reply<'_>,
    ) -> Result<(), AgentError> {
        let (client, _) = self.ensure_server(&task.project).await?;
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
            if question_answered(&messages, reply.question) {
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
        let (client, started) = self.ensure_server(&task.project).await?;
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
        let latest = history::derive(&client.messages(session).await?, &live).latest_text;
        let mut s = format!("todos {done} done, {left} left");
        let latest = last_lines(&latest, 3);
        if !latest.is_empty() {
            s.push_str(&format!("; latest: {latest}"));
        }
        Ok(s)
    }

    async fn interrupt(&self, task: &TaskRef, session: &str) -> Result<(), AgentError> {
        let (client, _) = self.ensure_server(&task.project).await?;
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
        let b = self.builder(&task.project)?;
        let mut b = b.lock().await;
        let client = Client::new(b.record.port, &b.password);
        if b.record.port == 0 || client.health_within(Duration::from_secs(5)).await.is_err() {
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
            self.cfg
                .tmux
                .kill_session(&b.project.tmux_session())
                .await?;
            b.record.stopped = true;
            write_record(&self.cfg.state_dir, &b.project.builder_name(), &b.record)?;
        }
        Ok(())
    }
}

/// Whether a question with this text was asked and answered in the session.
fn question_answered(messages: &[history::Message], question: &str) -> bool {
    messages.iter().flat_map(|m| &m.parts).any(|p| {
        p.tool.as_deref() == Some("question")
            && p.state.as_ref().is_some_and(|s| {
                s.status == "completed"
                    && s.input
                        .get("questions")
                        .and_then(Value::as_array)
                        .is_some_and(|qs| {
                            qs.iter().any(|q| {
                                q.get("question").and_then(Value::as_str) == Some(question)
                            })
                        })
            })
    })
}

/// Follows `GET /event` of one server, waking tasks and recording the last event.
struct Follower {
    client: Client,
    tasks: Arc<Mutex<HashMap<String, TaskRef>>>,
    wake: Option<Wake>,
    project: ProjectRef,
    state_dir: PathBuf,
}

impl Follower {
    async fn run(self) {
        let mut failures = 0u32;
        let name = self.project.builder_name();
        let mut last_saved = 0i64;
        loop {
            match self.client.events().await {
                Ok(mut stream) => {
                    failures = 0;
                    // After any gap, every task of the project re-syncs from the history.
                    self.wake_all();
                    while let Some(ev) = stream.next().await {
                        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
                        if !significant(&ev) {
                            continue;
                        }
                        if let Some(session) = session_of(&ev)
                            && let Some(task) = self.task_of(session)
                            && let Some(w) = &self.wake
                        {
                            w(&task);
                        }
                        let now = now_ms();
                        if now - last_saved > 1000 {
                            last_saved = now;
                            let line = serde_json::to_vec(&(kind, now)).unwrap_or_default();
                            let _ = write_atomic(
                                &last_event_path(&self.state_dir, &name),
                                &line,
                                0o644,
                            );
                        }
                    }
                    tracing::info!(builder = %name, "OpenCode event stream ended; reconnecting");
                    self.wake_all();
                }
                Err(e) => {
                    tracing::debug!(builder = %name, error = %e, "cannot follow OpenCode events");
                    if failures == 2 {
                        // The server may be down: let the tasks find out and restart it.
                        self.wake_all();
                    }
                }
            }
            failures += 1;
            let backoff =
                Duration::from_millis(250u64 << failures.min(6)).min(Duration::from_secs(10));
            tokio::time::sleep(backoff).await;
        }
    }

    fn task_of(&self, session: &str) -> Option<TaskRef> {
        self.tasks.lock().ok()?.get(session).cloned()
    }

    fn wake_all(&self) {
        let Some(w) = &self.wake else { return };
        let tasks: Vec<TaskRef> = self
            .tasks
            .lock()
            .map(|m| {
                m.values()
                    .filter(|t| t.project == self.project)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for t in tasks {
            w(&t);
        }
    }
}

/// Events worth a reconcile (not the token-by-token deltas).
fn significant(ev: &Value) -> bool {
    let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
    let props = ev.get("properties");
    match kind {
        "todo.updated" | "session.idle" | "session.status" | "session.error" => true,
        k if k.starts_with("question.") || k.starts_with("permission.") => true,
        "message.updated" => props
            .and_then(|p| p.get("info"))
            .is_some_and(|i| i.pointer("/time/completed").is_some() || i.get("error").is_some()),
        "message.part.updated" => props.and_then(|p| p.get("part")).is_some_and(|p| {
            p.get("type").and_then(Value::as_str) == Some("tool")
                && matches!(
                    p.pointer("/state/status").and_then(Value::as_str),
                    Some("completed" | "error" | "running")
                )
        }),
        _ => false,
    }
}

fn session_of(ev: &Value) -> Option<&str> {
    let p = ev.get("properties")?;
    p.get("sessionID")
        .or_else(|| p.pointer("/info/sessionID"))
        .or_else(|| p.pointer("/part/sessionID"))
        .and_then(Value::as_str)
}

/// A message id in OpenCode's ascending format (`msg_` + 12 hex digits of
/// `ms * 0x1000 + counter` + 14 characters), whose last 14 characters name the prompt, so
/// the prompt is recognised in the history after a crash.
pub fn message_id(prompt_id: &str) -> String {
    static LAST: Mutex<(i64, u64)> = Mutex::new((0, 0));
    let now = now_ms();
    let counter = match LAST.lock() {
        Ok(mut l) => {
            if l.0 == now {
                l.1 += 1;
            } else {
                *l = (now, 0);
            }
            l.1
        }
        Err(_) => 0,
    };
    let stamp = ((now as u64).wrapping_mul(0x1000).wrapping_add(counter)) & 0xFFFF_FFFF_FFFF;
    format!("msg_{stamp:012x}{}", prompt_suffix(prompt_id))
}

/// The 14-character tail of gaffer's message ids: `gaffer` and 8 characters of the prompt
/// id's hash.
pub fn prompt_suffix(prompt_id: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let hash = sha2::Sha256::digest(prompt_id.as_bytes());
    let mut s = String::from("gaffer");
    for b in hash.iter().take(8) {
        s.push(B62[(*b as usize) % 62] as char);
    }
    s
}

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

fn last_event_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.last-event"))
}

/// The last significant event a builder's stream carried: its type and when (ms), as the
/// reconciler that follows it recorded.
pub fn last_event(state_dir: &Path, record: &Record) -> Option<(String, i64)> {
    let name = record.project.replace('/', "-");
    serde_json::from_slice(&std::fs::read(last_event_path(state_dir, &name)).ok()?).ok()
}

fn env_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.env"))
}

/// The builder's lab environment (`KUBECONFIG`, `LAB_NAMESPACE`, `LAB_URL`), from the lab
/// deployer; kept apart from the password file so each has one writer.
fn lab_env_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lab.env"))
}

fn read_record(dir: &Path, name: &str) -> Result<Option<Record>, AgentError> {
    match std::fs::read(record_path(dir, name)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| runtime(format!("{}: {e}", record_path(dir, name).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(runtime(e)),
    }
}

fn write_record(dir: &Path, name: &str, record: &Record) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(runtime)?;
    write_atomic(&record_path(dir, name), &bytes, 0o644)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| runtime(format!("{}: {e}", dir.display())))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| runtime(format!("{}: {e}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| runtime(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| runtime(format!("{}: {e}", path.display())))
}

/// Writes `<builder>.lab.env` (mode 0600) when its content changes. A running server keeps
/// the environment it started with; the values are stable per project (the kubeconfig's
/// path stays, its token is refreshed in place).
fn write_lab_env(dir: &Path, name: &str, env: &[(String, String)]) -> Result<(), AgentError> {
    let mut text = String::new();
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\n') || v.contains('\n') {
            return Err(AgentError::Config(format!(
                "bad environment variable {k:?}"
            )));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    let path = lab_env_path(dir, name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        write_atomic(&path, text.as_bytes(), 0o600)?;
    }
    Ok(())
}

/// Writes `<builder>.env` (mode 0600) with a password kept from before, or a new one; returns
/// the password.
fn ensure_env_file(cfg: &Config, name: &str) -> Result<String, AgentError> {
    let path = env_path(&cfg.state_dir, name);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let password = match old
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_SERVER_PASSWORD="))
    {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => random_password()?,
    };
    let mut env = format!("OPENCODE_SERVER_PASSWORD={password}\nOPENCODE_DISABLE_AUTOUPDATE=1\n");
    for (k, v) in &cfg.env {
        if k.contains('=') || k.contains('\n') || v.contains('\n') {
            return Err(AgentError::Config(format!(
                "bad environment variable {k:?}"
            )));
        }
        env.push_str(&format!("{k}={v}\n"));
    }
    if env != old {
        write_atomic(&path, env.as_bytes(), 0o600)?;
    }
    Ok(password)
}

fn random_password() -> Result<String, AgentError> {
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|e| runtime(format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex::encode(buf))
}

fn parts_path(dir: &Path, request: &str) -> PathBuf {
    dir.join("answers").join(format!("{request}.json"))
}

fn read_parts(dir: &Path, request: &str) -> Result<BTreeMap<usize, Vec<String>>, AgentError> {
    match std::fs::read(parts_path(dir, request)) {
        Ok(b) => serde_json::from_slice(&b).map_err(runtime),
        Err(_) => Ok(BTreeMap::new()),
    }
}

fn write_parts(
    dir: &Path,
    request: &str,
    parts: &BTreeMap<usize, Vec<String>>,
) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec(parts).map_err(runtime)?;
    write_atomic(&parts_path(dir, request), &bytes, 0o644)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> Result<u16, AgentError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(runtime)?;
    Ok(l.local_addr().map_err(runtime)?.port())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let s = lines[lines.len().saturating_sub(n)..].join(" / ");
    if s.chars().count() > 300 {
        let t: String = s.chars().take(299).collect();
        format!("{t}…")
    } else {
        s
    }
}

/// Reads `KEY=VALUE` lines from the `env_files` (a missing file counts as empty) and
/// replaces this process with `argv` run in that environment (`gaffer exec-env`), so secrets
/// reach OpenCode without a command line.
pub fn exec_env(env_files: &[PathBuf], argv: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let mut text = String::new();
    for f in env_files {
        match std::fs::read_to_string(f) {
            Ok(t) => {
                text.push_str(&t);
                text.push('\n');
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return std::io::Error::new(e.kind(), format!("{}: {e}", f.display())),
        }
    }
    let Some((program, args)) = argv.split_first() else {
        return std::io::Error::other("nothing to run");
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=')
            && !k.is_empty()
        {
            cmd.env(k, v);
        }
    }
    cmd.exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_sort_in_time_and_name_their_prompt() {
        let a = message_id("task");
        let b = message_id("feedback-tests-1");
        assert!(a < b, "{a} then {b}");
        assert_eq!(a.len(), 30);
        assert!(a.starts_with("msg_"));
        assert!(a.ends_with(&prompt_suffix("task")));
        assert_ne!(prompt_suffix("task"), prompt_suffix("task2"));
    }

    #[test]
    fn significant_events_leave_out_deltas() {
        assert!(!significant(
            &json!({"type": "message.part.delta", "properties": {}})
        ));
        assert!(significant(
            &json!({"type": "todo.updated", "properties": {"sessionID": "s"}})
        ));
        assert!(significant(
            &json!({"type": "message.part.updated", "properties": {"part": {
            "type": "tool", "state": {"status": "completed"}}}})
        ));
        assert!(!significant(
            &json!({"type": "message.part.updated", "properties": {"part": {
            "type": "text"}}})
        ));
    }

    #[test]
    fn env_file_is_private_and_keeps_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            binary: "opencode".into(),
            launcher: "gaffer".into(),
            state_dir: dir.path().into(),
            tmux: Tmux::default(),
            env: vec![("HOME".into(), "/tmp/x".into())],
            start_timeout: Duration::from_secs(1),
        };
        let p1 = ensure_env_file(&cfg, "ai-x").unwrap();
        let p2 = ensure_env_file(&cfg, "ai-x").unwrap();
        assert_eq!(p1, p2);
        assert_eq!(p1.len(), 48);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(env_path(dir.path(), "ai-x"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(env_path(dir.path(), "ai-x")).unwrap();
        assert!(text.contains("HOME=/tmp/x\n"));
        assert!(text.contains("OPENCODE_DISABLE_AUTOUPDATE=1\n"));
    }
}
