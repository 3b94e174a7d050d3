//! A small client for OpenCode's HTTP API (the endpoints DESIGN.md lists), over hyper.
//!
//! Every route needs HTTP Basic auth (user `opencode`, the builder's password). Requests time
//! out; the event stream (`GET /event`) is a long-lived SSE body with TCP keepalive, since
//! OpenCode sends no heartbeats while idle.

use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

use super::history::{Message, PendingPermission, PendingQuestion};
use crate::agent::AgentError;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest page of messages asked for at once.
const MAX_PAGE: usize = 256;

/// A client for one OpenCode server.
#[derive(Clone)]
pub struct Client {
    base: String,
    auth: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers (the server is down or starting).
    #[error("cannot reach {0}")]
    Unreachable(String),
    /// The server answered with an error status.
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        /// Method.
        method: &'static str,
        /// Path.
        path: String,
        /// Status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The body was not what the API promises.
    #[error("{path}: unexpected response: {message}")]
    Decode {
        /// Path.
        path: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// The status code, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<ClientError> for AgentError {
    fn from(e: ClientError) -> Self {
        AgentError::Runtime(format!("opencode: {e}"))
    }
}

/// What [`Client::warm_up`] asks for.
const WARM_UP: &[&str] = &[
    "/agent",
    "/config/providers",
    "/skill",
    "/command",
    "/file/status",
    "/vcs",
    "/lsp",
    "/mcp",
    "/formatter",
    "/find/file?query=a",
    "/config",
    "/path",
    "/project/current",
    "/session",
    "/session/status",
    "/experimental/tool/ids",
];

/// `GET /global/health`.
#[derive(Debug, Deserialize)]
pub struct Health {
    /// Always true when it answers.
    pub healthy: bool,
    /// The server's version.
    pub version: String,
}

impl Client {
    /// A client for `http://127.0.0.1:<port>` with the builder's password.
    pub fn new(port: u16, password: &str) -> Self {
        Self::at(&format!("http://127.0.0.1:{port}"), password)
    }

    /// A client for the server at `base` (`http://<host>:<port>`, no trailing slash).
    pub fn at(base: &str, password: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_keepalive(Some(Duration::from_secs(30)));
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("opencode:{password}"));
        Self {
            base: base.to_string(),
            auth: format!("Basic {token}"),
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<hyper::Request<Full<Bytes>>, ClientError> {
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Decode {
                path: path.to_string(),
                message: e.to_string(),
            })?),
            None => Bytes::new(),
        };
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", &self.auth)
            .header("accept", "application/json");
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        b.body(Full::new(bytes)).map_err(|e| ClientError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes, ClientError> {
        Ok(self.exchange(method, path, body).await?.1)
    }

    /// One request: the response's headers and body (an error for a status outside 2xx).
    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(hyper::HeaderMap, Bytes), ClientError> {
        let req = self.request(method, path, body)?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|_| ClientError::Unreachable(self.base.clone()))?;
            let status = resp.status().as_u16();
            let (head, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|_| ClientError::Unreachable(self.base.clone()))?
                .to_bytes();
            if !(200..300).contains(&status) {
                let text = String::from_utf8_lossy(&bytes);
                return Err(ClientError::Status {
                    method,
                    path: path.to_string(),
                    status,
                    body: text.chars().take(300).collect(),
                });
            }
            Ok((head.headers, bytes))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Unreachable(self.base.clone()))?
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// `GET /global/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json("GET", "/global/health", None).await
    }

    /// `GET /global/health`, giving up after `limit`: a server that is still starting accepts
    /// connections but may never answer the ones it accepted that early.
    pub async fn health_within(&self, limit: Duration) -> Result<Health, ClientError> {
        tokio::time::timeout(limit, self.health())
            .await
            .map_err(|_| ClientError::Unreachable(self.base.clone()))?
    }

    /// Asks the server for everything its first session and prompt would otherwise load and
    /// start on the spot — its agents, providers and models, skills and commands, the file
    /// index, the file watcher and version control, language servers, MCP servers,
    /// formatters, its project, session store and tool list — for a server started ahead of
    /// its first task. Measured with 1.18.33: without this, a fresh server's first session
    /// and prompt reach the model 1.2–1.8 s after the prompt; with it, as fast as a later
    /// task's (docs/store.md, P7).
    pub async fn warm_up(&self) -> Result<(), ClientError> {
        for path in WARM_UP {
            self.call("GET", path, None).await?;
        }
        Ok(())
    }

    /// `POST /session`: returns the new session's id.
    pub async fn create_session(&self, body: &Value) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let c: Created = self.json("POST", "/session", Some(body)).await?;
        Ok(c.id)
    }

    /// `GET /session`: every session of the server, as `(id, title, created ms)`.
    pub async fn sessions(&self) -> Result<Vec<(String, String, i64)>, ClientError> {
        #[derive(Deserialize)]
        struct Listed {
            id: String,
            #[serde(default)]
            title: String,
            #[serde(default)]
            time: Option<Value>,
        }
        let listed: Vec<Listed> = self.json("GET", "/session", None).await?;
        Ok(listed
            .into_iter()
            .map(|s| {
                let created = s
                    .time
                    .as_ref()
                    .and_then(|t| t.get("created"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                (s.id, s.title, created)
            })
            .collect())
    }

    /// `GET /session/{id}`: whether the session exists.
    pub async fn session_exists(&self, id: &str) -> Result<bool, ClientError> {
        match self.call("GET", &format!("/session/{id}"), None).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.status(), Some(404) | Some(400)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /session/{id}/message`: the whole history, oldest first.
    pub async fn messages(&self, id: &str) -> Result<Vec<Message>, ClientError> {
        self.json("GET", &format!("/session/{id}/message"), None)
            .await
    }

    /// `GET /session/{id}/message?limit=N[&before=C]`: the newest `limit` messages older
    /// than the cursor `before` (all when none), oldest first, and the cursor of the page
    /// before them (`X-Next-Cursor`; none at the start of the session).
    pub async fn messages_page(
        &self,
        id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<Message>, Option<String>), ClientError> {
        let mut path = format!("/session/{id}/message?limit={limit}");
        if let Some(c) = before {
            path.push_str("&before=");
            path.extend(form_urlencoded::byte_serialize(c.as_bytes()));
        }
        let (headers, bytes) = self.exchange("GET", &path, None).await?;
        let page = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let next = headers
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok((page, next))
    }

    /// The messages after the one with id `last` (which the caller has read before): pages
    /// backwards from the newest, `first` messages and then twice as many each time, until
    /// the page holds `last`. So the cost follows what is new, not the session's length.
    /// `None` when `last` is no longer in the history (a revert removed it): read it all.
    pub async fn messages_after(
        &self,
        id: &str,
        last: &str,
        first: usize,
    ) -> Result<Option<Vec<Message>>, ClientError> {
        let mut limit = first.max(1);
        let mut before: Option<String> = None;
        let mut got: Vec<Message> = Vec::new();
        let mut cursors = std::collections::HashSet::new();
        loop {
            let (mut page, next) = self.messages_page(id, limit, before.as_deref()).await?;
            let found = page.iter().position(|m| m.info.id == last);
            page.append(&mut got);
            got = page;
            if let Some(i) = found {
                got.drain(..=i);
                return Ok(Some(got));
            }
            // Ids ascend in time: once the pages reach older ones, `last` is gone.
            let passed = got.first().is_some_and(|m| m.info.id.as_str() < last);
            // A cursor seen before (a server that pages in circles) ends it too: a full read
            // is slower, never wrong.
            match next {
                Some(c) if !passed && cursors.len() < 1024 && cursors.insert(c.clone()) => {
                    before = Some(c)
                }
                _ => return Ok(None),
            }
            limit = (limit * 2).min(MAX_PAGE);
        }
    }

    /// `GET /session/status`: the sessions that are not idle, by id (`busy`, `retry`).
    pub async fn statuses(
        &self,
    ) -> Result<std::collections::BTreeMap<String, SessionStatus>, ClientError> {
        self.json("GET", "/session/status", None).await
    }

    /// `GET /question`: pending questions.
    pub async fn questions(&self) -> Result<Vec<PendingQuestion>, ClientError> {
        self.json("GET", "/question", None).await
    }

    /// `GET /permission`: pending permission requests.
    pub async fn permissions(&self) -> Result<Vec<PendingPermission>, ClientError> {
        self.json("GET", "/permission", None).await
    }

    /// `GET /session/{id}/todo`.
    pub async fn todos(&self, id: &str) -> Result<Vec<super::history::Todo>, ClientError> {
        self.json("GET", &format!("/session/{id}/todo"), None).await
    }

    /// `POST /session/{id}/prompt_async` with a client-chosen message id.
    pub async fn prompt(&self, id: &str, body: &Value) -> Result<(), ClientError> {
        self.call("POST", &format!("/session/{id}/prompt_async"), Some(body))
            .await
            .map(drop)
    }

    /// `POST /session/{id}/abort`.
    pub async fn abort(&self, id: &str) -> Result<(), ClientError> {
        self.call("POST", &format!("/session/{id}/abort"), None)
            .await
            .map(drop)
    }

    /// `POST /question/{id}/reply`.
    pub async fn reply_question(
        &self,
        request: &str,
        answers: &[Vec<String>],
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({ "answers": answers });
        self.call("POST", &format!("/question/{request}/reply"), Some(&body))
            .await
            .map(drop)
    }

    /// `POST /permission/{id}/reply`.
    pub async fn reply_permission(&self, request: &str, reply: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "reply": reply });
        self.call("POST", &format!("/permission/{request}/reply"), Some(&body))
            .await
            .map(drop)
    }

    /// Opens `GET /event` and returns the response body to read frames from.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let mut req = self.request("GET", "/event", None)?;
        req.headers_mut().insert(
            "accept",
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| ClientError::Unreachable(self.base.clone()))?
            .map_err(|_| ClientError::Unreachable(self.base.clone()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ClientError::Status {
                method: "GET",
                path: "/event".into(),
                status,
                body: String::new(),
            });
        }
        Ok(EventStream {
            body: resp.into_body(),
            frames: SseFrames::default(),
        })
    }
}

/// A session's status in `GET /session/status`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SessionStatus {
    /// `idle`, `busy` or `retry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `retry`: why.
    #[serde(default)]
    pub message: Option<String>,
    /// For `retry`: which attempt.
    #[serde(default)]
    pub attempt: Option<u64>,
}

/// The SSE body of `GET /event`.
pub struct EventStream {
    body: hyper::body::Incoming,
    frames: SseFrames,
}

impl EventStream {
    /// The next event's JSON (`data:` lines of one frame), or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(v) = self.frames.next_event() {
                return Some(v);
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.frames.push(&data);
            }
        }
    }
}

/// Server-sent events, decoded from bytes as they arrive: frames end at a blank line, an
/// event is the JSON of a frame's joined `data:` lines; frames without JSON are skipped.
#[derive(Debug, Default)]
pub struct SseFrames {
    buf: Vec<u8>,
}

impl SseFrames {
    /// Adds bytes as they came off the wire.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if one has arrived.
    pub fn next_event(&mut self) -> Option<Value> {
        while let Some(end) = find_frame_end(&self.buf) {
            let frame: Vec<u8> = self.buf.drain(..end.1).collect();
            if let Some(data) = frame_data(&frame[..end.0])
                && let Ok(v) = serde_json::from_str::<Value>(&data)
            {
                return Some(v);
            }
        }
        None
    }
}

/// The end of the first SSE frame in `buf`: (end of its text, end including the blank line).
fn find_frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The joined `data:` lines of one SSE frame.
fn frame_data(frame: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(frame);
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_split_on_blank_lines_and_join_data_lines() {
        let buf = b"event: x\ndata: {\"a\":\ndata: 1}\n\ndata: 2\r\n\r\n";
        let (end, next) = find_frame_end(buf).unwrap();
        assert_eq!(frame_data(&buf[..end]).unwrap(), "{\"a\":\n1}");
        let rest = &buf[next..];
        let (end, _) = find_frame_end(rest).unwrap();
        assert_eq!(frame_data(&rest[..end]).unwrap(), "2");
        assert_eq!(find_frame_end(b"data: partial\n"), None);
    }
}
