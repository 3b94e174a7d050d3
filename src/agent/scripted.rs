//! The scripted agent: plays a YAML script of steps, for `gaffer demo` and tests.
//!
//! It is real production code behind [`AgentRuntime`], not a test double: it writes files in
//! the task's worktrees, reports todo items, asks questions and waits for their answers,
//! reacts to feedback prompts, and finishes. Its state (prompts seen, answers) lives in
//! `<data>/scripted/<session>.json`, so it survives a restart of gaffer; each step is
//! idempotent, so replaying one after a crash changes nothing.
//!
//! ```yaml
//! steps:
//!   - todo: Plan the JWT module
//!   - write: {path: domain-apis/src/jwt.py, content: "..."}
//!   - question: {text: "RS256 or HS256?", header: JWT signing,
//!                options: [{label: RS256 (Recommended)}, {label: HS256}]}
//!   - write: {path: domain-apis/src/alg.txt, content: "{{answer}}\n"}
//!   - done: JWT authentication implemented
//! fix:            # played after each feedback prompt (e.g. failing lab tests)
//!   - write: {path: domain-apis/src/fix.txt, content: "fixed\n"}
//!   - done: Fixed the failing tests
//! plan:           # a planning session's steps; `write` paths are under _bmad-output/
//!   - write: {path: specs/spec-{{task}}/SPEC.md, content: "# Spec\n"}
//!   - done: Spec written
//! revise:         # played after each change request to the plan
//!   - write: {path: specs/spec-{{task}}/SPEC.md, content: "# Spec, revised\n"}
//!   - done: Spec revised
//! ```
//!
//! A planning session plays `plan` (and `revise`) instead of `steps`; it reads no BMAD skill
//! (it has no model), so gaffer installs none for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    AgentError, AgentEvent, AgentRuntime, AskKind, AskedQuestion, Polled, Reply, Session,
    SessionRequest,
};
use crate::names::TaskRef;
use crate::state::status::QuestionOption;

/// A script.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The steps of the first prompt.
    pub steps: Vec<Step>,
    /// Steps played after each feedback prompt.
    #[serde(default)]
    pub fix: Vec<Step>,
    /// A planning session's steps (`write` paths under `_bmad-output/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<Step>,
    /// Steps played after each change request to the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revise: Vec<Step>,
}

/// One step. In `write`, `{{answer}}` is the last answer received and `{{task}}` the task name
/// (in the path too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Complete a todo item.
    Todo(String),
    /// Write a file, as `<repo>/<path>` inside the workspace; `{{answer}}` in the content is
    /// replaced by the last answer received.
    Write {
        /// Path inside the workspace.
        path: String,
        /// The content.
        content: String,
    },
    /// Ask a question and wait for the answer.
    Question {
        /// The question.
        text: String,
        /// A short header.
        #[serde(default)]
        header: String,
        /// The options (mark the recommended one with " (Recommended)").
        options: Vec<ScriptOption>,
        /// Whether free text is accepted.
        #[serde(default)]
        custom: bool,
    },
    /// Say the work is done.
    Done(String),
    /// Stop with an error.
    Fail {
        /// The message.
        message: String,
        /// Whether a retry may help.
        #[serde(default)]
        retryable: bool,
    },
}

/// An option of a scripted question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptOption {
    /// The label.
    pub label: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
}

/// Prompt ids starting with this are feedback (failing tests, review comments): each one
/// plays the script's `fix` steps. Other prompts (the task, "resume") play nothing new.
pub const FEEDBACK_PREFIX: &str = "feedback-";

/// What the scripted agent remembers about a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionState {
    project_dir: PathBuf,
    /// The task name, for `{{task}}` in written content.
    #[serde(default)]
    task: String,
    script: Script,
    /// Prompt ids received, in order; the first is the task, later ones are feedback.
    prompts: Vec<String>,
    /// Answers by request id.
    answers: BTreeMap<String, Vec<String>>,
    stopped: bool,
    /// The environment the builder was given (its lab access), as a real builder's
    /// processes would see it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    /// The texts of feedback prompts (test failures, review comments), as the builder read
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    feedback: Vec<String>,
    /// A planning session: plays `plan` and `revise`, writing under `_bmad-output/`.
    #[serde(default)]
    planning: bool,
}

/// The scripted runtime; sessions live under `<state_dir>`.
#[derive(Debug, Clone)]
pub struct ScriptedAgent {
    state_dir: PathBuf,
}

impl ScriptedAgent {
    /// A runtime keeping its sessions in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
    }

    fn path(&self, session: &str) -> PathBuf {
        self.state_dir.join(format!("{session}.json"))
    }

    fn load(&self, session: &str) -> Result<SessionState, AgentError> {
        let text = std::fs::read_to_string(self.path(session))
            .map_err(|_| AgentError::NoSession(session.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| AgentError::Runtime(format!("session {session}: {e}")))
    }

    fn save(&self, session: &str, state: &SessionState) -> Result<(), AgentError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|e| AgentError::Runtime(e.to_string()))?;
        let text =
            serde_json::to_string_pretty(state).map_err(|e| AgentError::Runtime(e.to_string()))?;
        // Atomic replace: a crash leaves the old or the new state, never half of one.
        crate::fsutil::write_atomic(&self.path(session), text.as_bytes(), None)
            .map_err(|e| AgentError::Runtime(e.to_string()))
    }
}

/// Resolves `<repo>/<path>` inside `root`'s repos (or, planning, `_bmad-output/<path>`),
/// refusing anything that leaves it.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, AgentError> {
    under(root, "repos", rel)
}

fn under(root: &Path, dir: &str, rel: &str) -> Result<PathBuf, AgentError> {
    if rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c == ".." || c.is_empty() || c == ".")
    {
        return Err(AgentError::Config(format!(
            "path {rel:?} must stay inside the workspace"
        )));
    }
    Ok(root.join(dir).join(rel))
}

/// The steps in play order for a session: the script's steps, then `fix` once per feedback
/// prompt. Cursor `n` means the first `n` steps' events were consumed.
fn timeline(state: &SessionState) -> Vec<Step> {
    if state.planning {
        let mut out = state.script.plan.clone();
        for _ in state
            .prompts
            .iter()
            .filter(|p| p.starts_with("plan-changes-"))
        {
            out.extend(state.script.revise.iter().cloned());
        }
        return out;
    }
    let mut out = state.script.steps.clone();
    for _ in state
        .prompts
        .iter()
        .filter(|p| p.starts_with(FEEDBACK_PREFIX))
    {
        out.extend(state.script.fix.iter().cloned());
    }
    out
}

#[async_trait::async_trait]
impl AgentRuntime for ScriptedAgent {
    fn kind(&self) -> crate::state::spec::RuntimeKind {
        crate::state::spec::RuntimeKind::Scripted
    }

    async fn ensure_session(
        &self,
        req: &SessionRequest,
        existing: Option<&str>,
    ) -> Result<Session, AgentError> {
        let id = match existing {
            Some(id) if self.path(id).is_file() => {
                return Ok(Session {
                    id: id.to_string(),
                    host: crate::state::status::HostKind::InProcess,
                    attach: None,
                    sandboxed: None,
                });
            }
            Some(id) => id.to_string(),
            // Deterministic, so a crash between creating and recording it finds it again.
            None => format!(
                "scripted-{}-{}",
                req.task.project.builder_name(),
                req.session_key().replace('.', "-")
            ),
        };
        if !self.path(&id).is_file() {
            let rel = req.script.as_deref().ok_or_else(|| {
                AgentError::Config("agent.script is not set for runtime: scripted".into())
            })?;
            let path = inside(&req.builder.project_dir, rel)?;
            let text = std::fs::read(&path).map_err(|e| {
                AgentError::Config(format!("cannot read script {}: {e}", path.display()))
            })?;
            let script: Script = crate::state::yaml::parse(&text)
                .map_err(|e| AgentError::Config(format!("script {rel}:{e}")))?;
            let state = SessionState {
                project_dir: req.builder.project_dir.clone(),
                task: req.task.task.to_string(),
                script,
                env: req.builder.env.iter().cloned().collect(),
                planning: req.stage == super::Stage::Plan,
                ..SessionState::default()
            };
            self.save(&id, &state)?;
        }
        Ok(Session {
            id,
            host: crate::state::status::HostKind::InProcess,
            attach: None,
            sandboxed: None,
        })
    }

    async fn delivered(
        &self,
        _task: &TaskRef,
        session: &str,
        prompt_id: &str,
    ) -> Result<bool, AgentError> {
        Ok(self.load(session)?.prompts.iter().any(|p| p == prompt_id))
    }

    async fn send(
        &self,
        _task: &TaskRef,
        session: &str,
        prompt_id: &str,
        text: &str,
    ) -> Result<(), AgentError> {
        let mut state = self.load(session)?;
        if !state.prompts.iter().any(|p| p == prompt_id) {
            state.prompts.push(prompt_id.to_string());
            if prompt_id.starts_with(FEEDBACK_PREFIX) {
                state.feedback.push(text.to_string());
            }
            state.stopped = false;
            self.save(session, &state)?;
        }
        Ok(())
    }

    async fn poll(
        &self,
        _task: &TaskRef,
        session: &str,
        cursor: u64,
    ) -> Result<Polled, AgentError> {
        let state = self.load(session)?;
        let steps = timeline(&state);
        let idle = Polled {
            events: Vec::new(),
            cursor,
            waiting: false,
            interrupted: None,
            usage: Vec::new(),
        };
        if state.stopped || state.prompts.is_empty() {
            return Ok(idle);
        }
        let i = cursor as usize;
        // Blocked on the previous step's question until it is answered.
        if i > 0
            && let Some(Step::Question { .. }) = steps.get(i - 1)
            && !state.answers.contains_key(&request_id(session, i - 1))
        {
            return Ok(Polled {
                waiting: true,
                ..idle
            });
        }
        // After a failure the agent stops, like a real one, until it is prompted to retry.
        let fails = steps[..i.min(steps.len())]
            .iter()
            .filter(|s| matches!(s, Step::Fail { .. }))
            .count();
        let retries = state
            .prompts
            .iter()
            .filter(|p| p.starts_with("retry-") || p.starts_with("resume-"))
            .count();
        if fails > retries {
            return Ok(idle);
        }
        let Some(step) = steps.get(i) else {
            return Ok(idle);
        };
        let event = match step {
            Step::Todo(text) => AgentEvent::Todo(text.clone()),
            Step::Write { path, content } => {
                let path = &path.replace("{{task}}", &state.task);
                let target = if state.planning {
                    under(&state.project_dir, crate::workspace::bmad::OUTPUT_DIR, path)?
                } else {
                    inside(&state.project_dir, path)?
                };
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| AgentError::Runtime(e.to_string()))?;
                }
                let last_answer = (0..i)
                    .rev()
                    .find_map(|j| state.answers.get(&request_id(session, j)))
                    .map(|a| a.join(", "))
                    .unwrap_or_default();
                let body = content
                    .replace("{{answer}}", &last_answer)
                    .replace("{{task}}", &state.task);
                std::fs::write(&target, body).map_err(|e| AgentError::Runtime(e.to_string()))?;
                AgentEvent::Edited(vec![path.clone()])
            }
            Step::Question {
                text,
                header,
                options,
                custom,
            } => AgentEvent::Question(AskedQuestion {
                kind: AskKind::Question,
                request_id: request_id(session, i),
                text: text.clone(),
                header: header.clone(),
                options: options
                    .iter()
                    .map(|o| QuestionOption {
                        label: o.label.clone(),
                        description: o.description.clone(),
                    })
                    .collect(),
                multiple: false,
                custom: *custom,
            }),
            Step::Done(summary) => AgentEvent::Finished(summary.clone()),
            Step::Fail { message, retryable } => AgentEvent::Failed {
                message: message.clone(),
                retryable: *retryable,
            },
        };
        Ok(Polled {
            events: vec![event],
            cursor: cursor + 1,
            waiting: false,
            interrupted: None,
            usage: Vec::new(),
        })
    }

    async fn answer(
        &self,
        _task: &TaskRef,
        session: &str,
        reply: &Reply<'_>,
    ) -> Result<(), AgentError> {
        let mut state = self.load(session)?;
        if state.answers.get(reply.request_id).map(Vec::as_slice) != Some(reply.choice) {
            state
                .answers
                .insert(reply.request_id.to_string(), reply.choice.to_vec());
            self.save(session, &state)?;
        }
        Ok(())
    }

    async fn stop(&self, _task: &TaskRef, session: &str) -> Result<(), AgentError> {
        let mut state = self.load(session)?;
        if !state.stopped {
            state.stopped = true;
            self.save(session, &state)?;
        }
        Ok(())
    }
}

fn request_id(session: &str, step: usize) -> String {
    format!("{session}-step-{step}")
}
