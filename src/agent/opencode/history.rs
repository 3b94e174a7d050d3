//! What the agent did, derived from OpenCode's durable session history.
//!
//! gaffer does not keep its own log of OpenCode events: the session's messages
//! (`GET /session/{id}/message`, stored by OpenCode in SQLite) are the record, and the events
//! the reconciler sees are a pure function of that history plus the live state (pending
//! questions and permissions, whether the session is busy). Each event has a *position* in the
//! history, `(message, part, sub)` packed into a `u64`; the reconciler's cursor is the position
//! of the last event it recorded. So after gaffer restarts (or the event stream had a gap, or
//! OpenCode restarted) the same history gives the same events at the same positions, and
//! nothing is reported twice or lost.
//!
//! Derivation stops at the first part that is still in progress (a running tool call, an
//! unfinished message): nothing after it can have happened yet, and the cursor never passes
//! something that may still produce an event.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{AgentEvent, AskKind, AskedQuestion};
use crate::state::status::QuestionOption;

/// One message with its parts, as `GET /session/{id}/message` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// The message.
    pub info: Info,
    /// Its parts, in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// A message's header.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    /// `msg_…`, ascending in time.
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// When it was created and (assistant) completed, in ms since the epoch.
    #[serde(default)]
    pub time: Times,
    /// An assistant message's error.
    #[serde(default)]
    pub error: Option<Value>,
    /// Why an assistant message ended (`stop`, `tool-calls`, `length`, …).
    #[serde(default)]
    pub finish: Option<String>,
    /// An assistant message's cost, from the model's price (0 when it has none).
    #[serde(default)]
    pub cost: Option<f64>,
    /// An assistant message's tokens.
    #[serde(default)]
    pub tokens: Option<Tokens>,
}

/// An assistant message's tokens, as OpenCode records them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tokens {
    /// Input (not from the cache).
    #[serde(default)]
    pub input: u64,
    /// Output.
    #[serde(default)]
    pub output: u64,
    /// Reasoning.
    #[serde(default)]
    pub reasoning: u64,
    /// The provider's cache.
    #[serde(default)]
    pub cache: CacheTokens,
}

/// Cache tokens.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CacheTokens {
    /// Read from the cache.
    #[serde(default)]
    pub read: u64,
    /// Written to the cache.
    #[serde(default)]
    pub write: u64,
}

impl Info {
    /// What this (finished) assistant message's model request used. OpenCode records a
    /// cost of 0 for a model without a price: with tokens used, that is an unknown cost.
    pub fn usage(&self) -> crate::state::status::Usage {
        let t = self.tokens.clone().unwrap_or_default();
        let cost = self.cost.unwrap_or(0.0).max(0.0);
        let used = t.input + t.output + t.reasoning + t.cache.read + t.cache.write;
        crate::state::status::Usage {
            requests: 1,
            input: t.input,
            output: t.output,
            reasoning: t.reasoning,
            cache_read: t.cache.read,
            cache_write: t.cache.write,
            cost,
            unpriced: u64::from(cost == 0.0 && used > 0),
        }
    }
}

/// Message times.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Times {
    /// Created, ms.
    #[serde(default)]
    pub created: i64,
    /// Completed, ms.
    #[serde(default)]
    pub completed: Option<i64>,
}

/// A message part.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// `text`, `tool`, `reasoning`, `step-start`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Text parts.
    #[serde(default)]
    pub text: Option<String>,
    /// Tool parts: the tool's name.
    #[serde(default)]
    pub tool: Option<String>,
    /// Tool parts: the call id.
    #[serde(rename = "callID", default)]
    pub call_id: Option<String>,
    /// Tool parts: the call's state.
    #[serde(default)]
    pub state: Option<ToolState>,
    /// Text added by OpenCode itself rather than the model.
    #[serde(default)]
    pub synthetic: Option<bool>,
}

/// A tool call's state.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolState {
    /// `pending`, `running`, `completed` or `error`.
    pub status: String,
    /// The call's arguments.
    #[serde(default)]
    pub input: Value,
    /// For `error`.
    #[serde(default)]
    pub error: Option<String>,
}

/// Which tool call a request belongs to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ToolRef {
    /// The message.
    #[serde(rename = "messageID")]
    pub message_id: String,
    /// The call.
    #[serde(rename = "callID")]
    pub call_id: String,
}

/// A pending question request (`GET /question`).
#[derive(Debug, Clone, Deserialize)]
pub struct PendingQuestion {
    /// `que_…`.
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// The questions.
    pub questions: Vec<QuestionInfo>,
    /// The tool call that asked.
    #[serde(default)]
    pub tool: Option<ToolRef>,
}

/// One question of a request.
#[derive(Debug, Clone, Deserialize)]
pub struct QuestionInfo {
    /// The question.
    pub question: String,
    /// A short header.
    #[serde(default)]
    pub header: String,
    /// The options.
    #[serde(default)]
    pub options: Vec<OptionInfo>,
    /// Several may be chosen.
    #[serde(default)]
    pub multiple: bool,
    /// Free text allowed (OpenCode's default is yes).
    #[serde(default)]
    pub custom: Option<bool>,
}

/// An option.
#[derive(Debug, Clone, Deserialize)]
pub struct OptionInfo {
    /// The label (the reply must repeat it exactly).
    pub label: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
}

/// A pending permission request (`GET /permission`).
#[derive(Debug, Clone, Deserialize)]
pub struct PendingPermission {
    /// `per_…`.
    pub id: String,
    /// The session.
    #[serde(rename = "sessionID")]
    pub session_id: String,
    /// What is asked for (`bash`, `edit`, `external_directory`, …).
    pub permission: String,
    /// The patterns (commands, paths).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// The tool call that needs it.
    #[serde(default)]
    pub tool: Option<ToolRef>,
}

/// A todo item (`GET /session/{id}/todo`, `todowrite`'s input).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Todo {
    /// What.
    pub content: String,
    /// `pending`, `in_progress`, `completed`, `cancelled`.
    #[serde(default)]
    pub status: String,
}

/// The live state next to the history.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The session is working (`busy` or `retry` in `GET /session/status`).
    pub busy: bool,
    /// When the current server process started (ms): older unfinished messages are dead.
    pub server_started_ms: i64,
    /// This session's pending questions.
    pub questions: Vec<PendingQuestion>,
    /// This session's pending permission requests.
    pub permissions: Vec<PendingPermission>,
}

/// What the history says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    /// Every event so far, with its position.
    pub events: Vec<(u64, AgentEvent)>,
    /// A question or permission request waits for an answer.
    pub waiting: bool,
    /// The message a server restart cut off, if the session is stuck on it.
    pub interrupted: Option<String>,
    /// The agent's latest text.
    pub latest_text: String,
    /// What each finished model request used, with its position and when it finished.
    pub usage: Vec<(u64, jiff::Timestamp, crate::state::status::Usage)>,
    /// The settled prefix of the history after this derivation: the next read starts after it.
    pub tail: Tail,
}

/// The settled start of a session's history: messages that can no longer change and that
/// derivation has passed, so they need never be read again. A poll reads only the messages
/// after it (OpenCode pages backwards from the newest; see [`super::client::Client::messages_after`])
/// and derives from there with what the settled messages left behind ([`Seed`]); positions
/// stay those of the whole history, so the events are the same as from a full read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tail {
    /// How many messages are settled: the index of the first one still read.
    pub settled: usize,
    /// The last settled message's id (none when nothing is settled yet).
    #[serde(default)]
    pub last_id: Option<String>,
    /// What derivation carries past them.
    #[serde(default)]
    pub seed: Seed,
}

/// What derivation carries from the settled messages into the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seed {
    /// Todos already reported done (a todo is reported once, however often it is rewritten).
    #[serde(default)]
    pub todos_done: BTreeSet<String>,
    /// The agent's latest text.
    #[serde(default)]
    pub latest_text: String,
}

/// How many leading messages of `window` are settled: finished (a user message, an
/// assistant message completed or failed, with no tool call still open), never the last
/// message (its end can still turn into an event once the session goes idle).
fn settled_len(window: &[Message]) -> usize {
    let open = |m: &Message| {
        m.info.role == "assistant"
            && ((m.info.time.completed.is_none() && m.info.error.is_none())
                || m.parts.iter().any(|p| {
                    p.state
                        .as_ref()
                        .is_some_and(|s| !matches!(s.status.as_str(), "completed" | "error"))
                }))
    };
    window
        .iter()
        .take(window.len().saturating_sub(1))
        .take_while(|m| !open(m))
        .count()
}

/// Request ids for questions OpenCode no longer holds start with this (the answer goes as a
/// prompt).
pub const LOST_PREFIX: &str = "lost-";

/// Sub-positions: requests (questions, permissions) first, then what a finished part did.
const SUB_DONE: u64 = 16;
/// The part index used for a message's end.
const END_PART: u64 = 0xFFFE;

fn position(message: usize, part: u64, sub: u64) -> u64 {
    ((message as u64 + 1) << 24) | ((part + 1).min(0xFFFF) << 8) | sub.min(0xFF)
}

/// The marker the task prompt asks the agent to put in its final message.
pub const DONE_MARKER: &str = "DONE:";

/// The summary after the done marker, if the text reports completion.
pub fn done_summary(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches(['*', '#', '`', ' ']);
        l.strip_prefix(DONE_MARKER)
            .map(|rest| rest.trim().trim_end_matches(['*', '`']).trim().to_string())
    })
}

/// Derives every event of `history` (see the module docs).
pub fn derive(history: &[Message], live: &Live) -> Derived {
    derive_after(&Tail::default(), history, live, 0)
}

/// The messages a cursor has consumed whole: those before the one its position is in.
pub fn consumed(cursor: u64) -> usize {
    usize::try_from((cursor >> 24).saturating_sub(1)).unwrap_or(usize::MAX)
}

/// Derives the events of `history`, the messages after the settled `tail`, at the
/// positions they have in the whole history. The new tail settles no message beyond the
/// first `consumed` of the whole history (see [`consumed`]): what the reconciler has not
/// recorded yet must be derived again after a crash.
pub fn derive_after(tail: &Tail, history: &[Message], live: &Live, consumed: usize) -> Derived {
    let mut out = Derived {
        latest_text: tail.seed.latest_text.clone(),
        tail: tail.clone(),
        ..Derived::default()
    };
    let mut todos_done = tail.seed.todos_done.clone();
    let settled = settled_len(history).min(consumed.saturating_sub(tail.settled));
    if derive_into(
        &mut out,
        &mut todos_done,
        tail.settled,
        settled,
        history,
        live,
    ) {
        out.interrupted = interrupted(history, live);
    }
    out
}

/// Derives into `out`; false when it stopped at something still in progress.
fn derive_into(
    out: &mut Derived,
    todos_done: &mut BTreeSet<String>,
    base: usize,
    settled: usize,
    history: &[Message],
    live: &Live,
) -> bool {
    let position = |mi: usize, part: u64, sub: u64| position(base + mi, part, sub);
    for (mi, m) in history.iter().enumerate() {
        if mi == settled && settled > 0 {
            out.tail = Tail {
                settled: base + settled,
                last_id: Some(history[settled - 1].info.id.clone()),
                seed: Seed {
                    todos_done: todos_done.clone(),
                    latest_text: out.latest_text.clone(),
                },
            };
        }
        if m.info.role != "assistant" {
            continue;
        }
        let complete = m.info.time.completed.is_some() || m.info.error.is_some();
        // An unfinished message nothing is working on any more: the server restarted under it,
        // the session is idle, or a later answer replaced it.
        let dead = !complete
            && (m.info.time.created < live.server_started_ms
                || !live.busy
                || history[mi + 1..].iter().any(|n| n.info.role == "assistant"));
        let mut turn_text = String::new();
        for (pi, part) in m.parts.iter().enumerate() {
            let pi = pi as u64;
            match part.kind.as_str() {
                "text" => {
                    if let Some(t) = &part.text
                        && !part.synthetic.unwrap_or(false)
                        && !t.trim().is_empty()
                    {
                        turn_text = t.clone();
                        out.latest_text = t.clone();
                    }
                }
                "tool" => {
                    let Some(state) = &part.state else { continue };
                    let tool = part.tool.as_deref().unwrap_or("");
                    let call = part.call_id.as_deref().unwrap_or("");
                    match state.status.as_str() {
                        "completed" => {
                            let done = finished_tool(tool, &state.input, todos_done);
                            for (sub, e) in (SUB_DONE..).zip(done) {
                                out.events.push((position(mi, pi, sub), e));
                            }
                        }
                        "error" => {}
                        _ => {
                            // Pending or running.
                            let asks = asks_for(tool, call, &state.input, live, dead);
                            if !asks.is_empty() {
                                out.waiting = !dead;
                                for (sub, e) in asks.into_iter().enumerate() {
                                    out.events.push((
                                        position(mi, pi, sub as u64),
                                        AgentEvent::Question(e),
                                    ));
                                }
                            }
                            if !dead {
                                return false;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !complete {
            if dead {
                continue;
            }
            return false;
        }
        let end = position(mi, END_PART, 0);
        // Counted once per message, after its parts and before its end: an end event can
        // still appear later (a turn found stalled once the session is idle), so the cursor
        // must not pass it for the usage's sake.
        if m.info.tokens.is_some() || m.info.cost.is_some() {
            let at = m.info.time.completed.unwrap_or(m.info.time.created);
            out.usage.push((
                position(mi, END_PART - 1, 0),
                jiff::Timestamp::from_millisecond(at).unwrap_or_default(),
                m.info.usage(),
            ));
        }
        if let Some(err) = &m.info.error {
            let name = err.get("name").and_then(Value::as_str).unwrap_or("Error");
            if name == "MessageAbortedError" {
                continue;
            }
            let data = err.get("data");
            let message = data
                .and_then(|d| d.get("message"))
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string();
            let retryable = data
                .and_then(|d| d.get("isRetryable"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            out.events.push((
                end,
                AgentEvent::Failed {
                    message: format!("{name}: {message}"),
                    retryable,
                },
            ));
            continue;
        }
        if m.info.finish.as_deref() == Some("tool-calls") {
            // The loop goes on after tool calls; if the session went idle on them instead (a
            // refused permission stops OpenCode's loop), the turn has ended.
            let stalled = mi + 1 == history.len() && !live.busy;
            if stalled {
                out.events
                    .push((end, AgentEvent::TurnEnded(turn_text.clone())));
            }
            continue;
        }
        let event = match done_summary(&turn_text) {
            Some(summary) => AgentEvent::Finished(if summary.is_empty() {
                first_line(&turn_text)
            } else {
                summary
            }),
            None => AgentEvent::TurnEnded(turn_text.clone()),
        };
        out.events.push((end, event));
    }
    true
}

/// The last message, when a server restart cut it off and the session sits idle.
fn interrupted(history: &[Message], live: &Live) -> Option<String> {
    let m = history.last()?;
    let aborted = m
        .info
        .error
        .as_ref()
        .and_then(|e| e.get("name"))
        .and_then(Value::as_str)
        == Some("MessageAbortedError");
    let unfinished = match m.info.role.as_str() {
        "user" => true,
        // An abort older than the server is the restart's doing, not a person's.
        _ => (m.info.time.completed.is_none() && m.info.error.is_none()) || aborted,
    };
    (unfinished && !live.busy && m.info.time.created < live.server_started_ms)
        .then(|| m.info.id.clone())
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Events of a finished tool call.
fn finished_tool(tool: &str, input: &Value, todos_done: &mut BTreeSet<String>) -> Vec<AgentEvent> {
    match tool {
        "todowrite" => {
            let todos: Vec<Todo> = input
                .get("todos")
                .cloned()
                .and_then(|t| serde_json::from_value(t).ok())
                .unwrap_or_default();
            todos
                .into_iter()
                .filter(|t| t.status == "completed" && todos_done.insert(t.content.clone()))
                .map(|t| AgentEvent::Todo(t.content))
                .collect()
        }
        "write" | "edit" | "multiedit" => {
            let path = input
                .get("filePath")
                .and_then(Value::as_str)
                .unwrap_or("a file");
            vec![AgentEvent::Edited(vec![path.to_string()])]
        }
        "patch" | "apply_patch" => vec![AgentEvent::Edited(vec!["a patch".to_string()])],
        _ => Vec::new(),
    }
}

/// The requests a running tool call waits on.
fn asks_for(tool: &str, call: &str, input: &Value, live: &Live, dead: bool) -> Vec<AskedQuestion> {
    let mine = |t: &Option<ToolRef>| t.as_ref().is_some_and(|t| t.call_id == call);
    if let Some(p) = live.permissions.iter().find(|p| mine(&p.tool)) {
        let what = if p.patterns.is_empty() {
            String::new()
        } else {
            format!(": {}", p.patterns.join(", "))
        };
        return vec![AskedQuestion {
            kind: AskKind::Permission,
            request_id: p.id.clone(),
            text: format!(
                "The agent asks for permission to use {}{what}",
                p.permission
            ),
            header: format!("Permission: {}", p.permission)
                .chars()
                .take(30)
                .collect(),
            options: [
                ("once", "Allow this time"),
                ("always", "Allow from now on in this session"),
                ("reject", "Refuse"),
            ]
            .into_iter()
            .map(|(l, d)| QuestionOption {
                label: l.into(),
                description: d.into(),
            })
            .collect(),
            multiple: false,
            custom: false,
        }];
    }
    if tool != "question" {
        return Vec::new();
    }
    if let Some(q) = live.questions.iter().find(|q| mine(&q.tool)) {
        let n = q.questions.len();
        return q
            .questions
            .iter()
            .enumerate()
            .map(|(i, info)| {
                let id = if n > 1 {
                    format!("{}#{i}", q.id)
                } else {
                    q.id.clone()
                };
                asked(id, info)
            })
            .collect();
    }
    if !dead {
        return Vec::new();
    }
    // The server restarted while the question was pending: OpenCode forgot it, but the
    // question is in the history, and the answer can still reach the agent as a prompt.
    let infos: Vec<QuestionInfo> = input
        .get("questions")
        .cloned()
        .and_then(|q| serde_json::from_value(q).ok())
        .unwrap_or_default();
    let n = infos.len();
    infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let id = if n > 1 {
                format!("{LOST_PREFIX}{call}#{i}")
            } else {
                format!("{LOST_PREFIX}{call}")
            };
            asked(id, info)
        })
        .collect()
}

fn asked(request_id: String, info: &QuestionInfo) -> AskedQuestion {
    AskedQuestion {
        kind: AskKind::Question,
        request_id,
        text: info.question.clone(),
        header: info.header.clone(),
        options: info
            .options
            .iter()
            .map(|o| QuestionOption {
                label: o.label.clone(),
                description: o.description.clone(),
            })
            .collect(),
        multiple: info.multiple,
        custom: info.custom.unwrap_or(true),
    }
}

/// Whether a question with this text was asked and answered in the session.
pub fn question_answered(messages: &[Message], question: &str) -> bool {
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

#[cfg(test)]
mod tests;
