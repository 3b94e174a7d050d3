//! A scripted LLM: an OpenAI-compatible `POST /v1/chat/completions` server on 127.0.0.1 that
//! the real OpenCode talks to in tests.
//!
//! Each conversation is recognised by a key (a string in its messages, e.g. the task title)
//! and answered from that key's script. The step is the number of assistant turns already in
//! the request (turns with text or tool calls), so a request OpenCode repeats after a restart
//! gets the same step again, and the log shows it. Every request is logged for assertions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted reply.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Text to stream.
    pub text: Option<String>,
    /// Tool calls: (tool, arguments).
    pub tools: Vec<(String, Value)>,
    /// The first request for this step gets no answer until [`Llm::release`] (or ever, if
    /// never released); later requests are answered at once.
    pub hold: bool,
    /// The first request for this step gets this HTTP error status instead.
    pub fail_once: Option<u16>,
}

impl Step {
    /// A text reply (ends the turn).
    pub fn text(t: &str) -> Self {
        Step {
            text: Some(t.into()),
            ..Step::default()
        }
    }

    /// One tool call.
    pub fn tool(name: &str, args: Value) -> Self {
        Step {
            tools: vec![(name.into(), args)],
            ..Step::default()
        }
    }

    /// Holds the first request for this step.
    pub fn held(mut self) -> Self {
        self.hold = true;
        self
    }

    /// Fails the first request for this step with `status`.
    pub fn failing_once(mut self, status: u16) -> Self {
        self.fail_once = Some(status);
        self
    }
}

/// `todowrite` arguments.
pub fn todos(items: &[(&str, &str)]) -> Value {
    json!({"todos": items.iter().map(|(c, s)| json!({"content": c, "status": s, "priority": "high"})).collect::<Vec<_>>()})
}

/// A logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The conversation's key, if any script matched.
    pub key: Option<String>,
    /// The step it asked for.
    pub step: usize,
    /// The text of the last user message.
    pub last_user: String,
    /// Every user message's text.
    pub user_texts: Vec<String>,
    /// Every tool result's text.
    pub tool_texts: Vec<String>,
    /// Whether it was held.
    pub held: bool,
    /// Whether it was failed on purpose.
    pub failed: bool,
}

#[derive(Default)]
struct Inner {
    scripts: BTreeMap<String, Vec<Step>>,
    log: Vec<Logged>,
    held: BTreeMap<(String, usize), bool>,
}

/// The server; stops when dropped.
pub struct Llm {
    /// Its address.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    release: Arc<tokio::sync::watch::Sender<bool>>,
    server: Option<super::Served>,
}

impl Llm {
    /// Starts a server with no scripts.
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let release = Arc::new(tokio::sync::watch::channel(false).0);
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state((inner.clone(), release.clone()));
        let server = super::Served::start(app);
        Llm {
            addr: server.addr,
            inner,
            release,
            server: Some(server),
        }
    }

    /// Scripts the conversation whose messages contain `key`.
    pub fn script(&self, key: &str, steps: Vec<Step>) {
        self.inner.lock().unwrap().scripts.insert(key.into(), steps);
    }

    /// Answers held requests, and from now on holds nothing.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    /// The requests so far.
    pub fn log(&self) -> Vec<Logged> {
        self.inner.lock().unwrap().log.clone()
    }

    /// The requests of one conversation.
    pub fn log_of(&self, key: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.key.as_deref() == Some(key))
            .collect()
    }

    /// The `opencode.json` that points OpenCode at this server.
    pub fn opencode_config(&self) -> Value {
        json!({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"scripted": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted",
                "options": {"baseURL": format!("http://{}/v1", self.addr), "apiKey": "test"},
                // A price (per million tokens), so OpenCode records a cost on each message.
                "models": {"m": {"name": "m", "cost": {"input": 1.0, "output": 2.0}}},
            }},
            "model": "scripted/m",
            "autoupdate": false,
            "share": "disabled",
        })
    }
}

impl Drop for Llm {
    fn drop(&mut self) {
        // Held requests are answered first, so the server stops at once.
        self.release();
        drop(self.server.take());
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

type AppState = (Arc<Mutex<Inner>>, Arc<tokio::sync::watch::Sender<bool>>);

async fn complete(State((inner, release)): State<AppState>, body: String) -> Response {
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let all_text: String = messages
        .iter()
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join("\n");
    let user_texts: Vec<String> = messages
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .collect();
    let tool_texts: Vec<String> = messages
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .collect();
    let step = messages
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .filter(|m| {
            !text_of(m.get("content").unwrap_or(&Value::Null))
                .trim()
                .is_empty()
                || m.get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|t| !t.is_empty())
        })
        .count();
    let (key, reply, hold, fail) = {
        let mut g = inner.lock().unwrap();
        let key = g
            .scripts
            .keys()
            .find(|k| all_text.contains(k.as_str()))
            .cloned();
        let reply = key
            .as_ref()
            .and_then(|k| g.scripts[k].get(step).cloned())
            .unwrap_or_else(|| Step::text("DONE: nothing scripted"));
        let first = key.as_ref().is_some_and(|k| {
            let first = !g.held.contains_key(&(k.clone(), step));
            g.held.insert((k.clone(), step), true);
            first
        });
        let hold = reply.hold && first;
        let fail = reply.fail_once.filter(|_| first);
        g.log.push(Logged {
            key: key.clone(),
            step,
            last_user: user_texts.last().cloned().unwrap_or_default(),
            user_texts,
            tool_texts,
            held: hold,
            failed: fail.is_some(),
        });
        (key, reply, hold, fail)
    };
    if let Some(status) = fail {
        let body =
            json!({"error": {"message": "scripted failure", "type": "invalid_request_error"}});
        return (
            axum::http::StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    if hold {
        let _ = release.subscribe().wait_for(|released| *released).await;
    }
    // `task demo:full` slows the model down so a person can follow it in tmux.
    if key.is_some()
        && let Some(ms) = std::env::var("GAFFER_DEMO_SLOW")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 1)
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    sse(&reply, step)
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {c}\n\n")
}

fn sse(step: &Step, n: usize) -> Response {
    let mut out = chunk(json!({"role": "assistant", "content": ""}), None);
    if let Some(t) = &step.text {
        out.push_str(&chunk(json!({"content": t}), None));
    }
    for (i, (name, args)) in step.tools.iter().enumerate() {
        out.push_str(&chunk(
            json!({"tool_calls": [{"index": i, "id": format!("call_{n}_{i}"), "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]}),
            None,
        ));
    }
    let finish = if step.tools.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    out.push_str(&chunk(json!({}), Some(finish)));
    let usage = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
        "model": "m", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}});
    out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    ([("content-type", "text/event-stream")], out).into_response()
}
