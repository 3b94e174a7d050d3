//! A fake Slack on 127.0.0.1 speaking the real protocols, so the production client
//! (slack-morphism) is what the tests exercise: the Web API (`/api/<method>`, checking the
//! bot token, logging every call, keeping channels, messages and modals) and Socket Mode (a
//! WebSocket that says hello, delivers envelopes and collects their acks).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method, e.g. `chat.postMessage`.
    pub method: String,
    /// The body, as JSON (form bodies and query strings are turned into objects).
    pub body: Value,
}

/// A message as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Message {
    /// Channel id.
    pub channel: String,
    /// Its ts.
    pub ts: String,
    /// The thread it is in (None: top level).
    pub thread_ts: Option<String>,
    /// Fallback text (latest).
    pub text: String,
    /// Blocks (latest).
    pub blocks: Value,
    /// Also shown in the channel.
    pub broadcast: bool,
    /// How often it was updated.
    pub updates: u32,
    /// The person who wrote it (`None`: the bot posted it).
    pub user: Option<String>,
}

impl Message {
    /// The key the bot put in the first block's `block_id`.
    pub fn key(&self) -> String {
        self.blocks[0]["block_id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// All text in the blocks.
    pub fn all_text(&self) -> String {
        let mut out = self.text.clone();
        collect_text(&self.blocks, &mut out);
        out
    }
}

fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(t)) = m.get("text") {
                out.push('\n');
                out.push_str(t);
            }
            for (_, x) in m {
                collect_text(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        _ => {}
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    next_ts: u64,
    /// Channels: (id, name).
    channels: Vec<(String, String)>,
    messages: Vec<Message>,
    /// (channel, user, text).
    ephemerals: Vec<(String, String, String)>,
    /// Open modals by id.
    views: HashMap<String, Value>,
    next_view: u32,
    sockets: Vec<mpsc::UnboundedSender<String>>,
    /// Ack payloads by envelope id.
    acks: HashMap<String, Value>,
    /// Home tabs published: user → (count, latest view).
    homes: HashMap<String, (u32, Value)>,
    next_envelope: u32,
    /// The n-th chat.postMessage (1-based) is recorded and then not answered until released.
    stall_post: Option<u64>,
    posts: u64,
    stalled: bool,
    released: bool,
}

type Shared = Arc<(Mutex<Inner>, Condvar)>;

/// The fake; stops when dropped.
pub struct FakeSlack {
    /// Its Web API address.
    pub addr: SocketAddr,
    inner: Shared,
    _server: super::Served,
    _socket: super::Served,
}

/// The bot token the fake accepts.
pub const BOT_TOKEN: &str = "xoxb-test-token";
/// The app-level token the fake accepts (Socket Mode).
pub const APP_TOKEN: &str = "xapp-test-token";
/// The team.
pub const TEAM: &str = "T0GAFFER";

impl FakeSlack {
    /// Starts the fake.
    pub fn start() -> Self {
        let inner: Shared = Arc::new((Mutex::new(Inner::default()), Condvar::new()));
        let socket = super::Served::start_with({
            let inner = inner.clone();
            move |listener| socket_server(listener, inner)
        });
        let ws_url = format!("ws://{}/socket", socket.addr);
        let app = axum::Router::new()
            .route("/api/{method}", axum::routing::post(call).get(call))
            .with_state((inner.clone(), ws_url));
        let server = super::Served::start(app);
        FakeSlack {
            addr: server.addr,
            inner,
            _server: server,
            _socket: socket,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap()
    }

    /// The API URL to give the client.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Adds an existing channel.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.lock().channels.push((id.into(), name.into()));
    }

    /// The channels: (id, name).
    pub fn channels(&self) -> Vec<(String, String)> {
        self.lock().channels.clone()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The messages, in posting order.
    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.clone()
    }

    /// Ephemeral messages: (channel, user, text).
    pub fn ephemerals(&self) -> Vec<(String, String, String)> {
        self.lock().ephemerals.clone()
    }

    /// The open modals: (id, view), by id.
    pub fn views(&self) -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> = self
            .lock()
            .views
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by_key(|(k, _)| k[1..].parse::<u32>().unwrap_or(0));
        v
    }

    /// The Home tab published for `user`: how often, and the latest view.
    pub fn home(&self, user: &str) -> Option<(u32, Value)> {
        self.lock().homes.get(user).cloned()
    }

    /// `user` writes `text` in the thread at `thread_ts` of `channel`: the message is kept
    /// and delivered to the bot as an Events API `message` event (Socket Mode); returns its
    /// ts once the bot acknowledged it.
    pub fn reply(&self, user: &str, channel: &str, thread_ts: &str, text: &str) -> String {
        let ts = {
            let mut g = self.lock();
            g.next_ts += 1;
            let ts = format!("1700000000.{:06}", g.next_ts);
            g.messages.push(Message {
                channel: channel.into(),
                ts: ts.clone(),
                thread_ts: Some(thread_ts.into()),
                text: text.into(),
                blocks: Value::Null,
                broadcast: false,
                updates: 0,
                user: Some(user.into()),
            });
            ts
        };
        self.event(
            json!({"type": "message", "channel": channel, "user": user, "text": text,
            "ts": ts, "thread_ts": thread_ts, "channel_type": "channel", "event_ts": ts}),
        );
        ts
    }

    /// `user` opens the app's Home tab (`app_home_opened`).
    pub fn open_home(&self, user: &str) {
        self.event(
            json!({"type": "app_home_opened", "user": user, "channel": "D0HOME",
            "tab": "home", "event_ts": "1700000000.5"}),
        );
    }

    /// Delivers an Events API event over Socket Mode and waits for its ack.
    pub fn event(&self, event: Value) -> Value {
        let id = {
            let mut g = self.lock();
            g.next_envelope += 1;
            g.next_envelope
        };
        self.send_envelope(
            "events_api",
            json!({"token": "x", "team_id": TEAM, "api_app_id": "A0GAFFER", "event": event,
                "type": "event_callback", "event_id": format!("Ev{id:08}"), "event_time": 1700000000}),
        )
    }

    /// Holds the answer to the `n`-th chat.postMessage (counting from now) after recording
    /// the message, until [`FakeSlack::release`].
    pub fn stall_post(&self, n: u64) {
        let mut g = self.lock();
        g.stall_post = Some(g.posts + n);
        g.stalled = false;
        g.released = false;
    }

    /// Waits until a post is stalled.
    pub fn wait_stalled(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut g = self.lock();
        while !g.stalled {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no post was stalled");
            g = self.inner.1.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Whether a post is stalled now.
    pub fn is_stalled(&self) -> bool {
        let g = self.lock();
        g.stalled && !g.released
    }

    /// Lets a stalled post answer.
    pub fn release(&self) {
        let mut g = self.lock();
        g.released = true;
        g.stall_post = None;
        self.inner.1.notify_all();
    }

    /// Sends a Socket Mode envelope of `kind` (`slash_commands`, `interactive`) on a
    /// connected socket and waits for its ack; returns the ack's payload (Null if none).
    pub fn send_envelope(&self, kind: &str, payload: Value) -> Value {
        self.try_envelope(kind, payload, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("envelope ({kind}) was not acknowledged"))
    }

    /// Like [`FakeSlack::send_envelope`], `None` when no ack came within `wait` (Slack
    /// would deliver it again).
    pub fn try_envelope(&self, kind: &str, payload: Value, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        let mut g = self.lock();
        while g.sockets.iter().all(|s| s.is_closed()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            g = self.inner.1.wait_timeout(g, left).unwrap().0;
        }
        g.next_envelope += 1;
        let id = format!("env-{}", g.next_envelope);
        let envelope = json!({"envelope_id": id, "type": kind, "payload": payload,
            "accepts_response_payload": true, "retry_attempt": 0, "retry_reason": ""});
        let sock = g.sockets.iter().rev().find(|s| !s.is_closed()).unwrap();
        if sock.send(envelope.to_string()).is_err() {
            return None;
        }
        loop {
            if let Some(p) = g.acks.remove(&id) {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            g = self.inner.1.wait_timeout(g, left).unwrap().0;
        }
    }

    /// `/opencode <text>` from `user` in `channel`; returns the ack payload.
    pub fn slash(&self, user: &str, channel: &str, text: &str) -> Value {
        self.send_envelope(
            "slash_commands",
            json!({"token": "x", "team_id": TEAM, "team_domain": "gaffer", "channel_id": channel,
                "channel_name": "general", "user_id": user, "user_name": user,
                "command": "/opencode", "text": text, "api_app_id": "A0GAFFER",
                "response_url": "https://hooks.slack.com/commands/1", "trigger_id": format!("trig-{user}")}),
        )
    }

    /// A click on the button `action_id` of message `ts` in `channel` by `user`.
    pub fn click(&self, user: &str, channel: &str, ts: &str, action_id: &str) -> Value {
        self.try_click(user, channel, ts, action_id, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the click on {action_id} was not acknowledged"))
    }

    /// Like [`FakeSlack::click`], `None` without an ack within `wait`.
    pub fn try_click(
        &self,
        user: &str,
        channel: &str,
        ts: &str,
        action_id: &str,
        wait: Duration,
    ) -> Option<Value> {
        self.try_envelope(
            "interactive",
            json!({"type": "block_actions", "team": {"id": TEAM, "domain": "gaffer"},
                "user": {"id": user, "username": user, "team_id": TEAM},
                "api_app_id": "A0GAFFER", "trigger_id": format!("trig-{user}-{ts}"),
                "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
                "channel": {"id": channel, "name": "c"},
                "response_url": "https://hooks.slack.com/actions/1",
                "actions": [{"type": "button", "action_id": action_id, "block_id": "b",
                    "value": "v", "action_ts": "1700000000.1"}]}),
            wait,
        )
    }

    /// A select change inside modal `view_id`.
    pub fn select_in_view(&self, user: &str, view_id: &str, action_id: &str, value: &str) -> Value {
        let view = self.lock().views[view_id].clone();
        self.send_envelope(
            "interactive",
            json!({"type": "block_actions", "team": {"id": TEAM, "domain": "gaffer"},
                "user": {"id": user, "username": user, "team_id": TEAM},
                "api_app_id": "A0GAFFER", "trigger_id": "trig-select",
                "container": {"type": "view", "view_id": view_id},
                "view": strip_state(&view),
                "actions": [{"type": "static_select", "action_id": action_id, "block_id": action_id,
                    "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value},
                    "action_ts": "1700000000.2"}]}),
        )
    }

    /// Submits modal `view_id` with `values` (block id = action id → value; a value in
    /// `selected:` form is a select's option) as `user`; returns the ack payload.
    pub fn submit(&self, user: &str, view_id: &str, values: &[(&str, &str)]) -> Value {
        let view = self.lock().views[view_id].clone();
        let mut state = serde_json::Map::new();
        for (block, v) in values {
            let entry = match v.strip_prefix("selected:") {
                Some(s) => json!({"type": "static_select", "selected_option":
                    {"text": {"type": "plain_text", "text": s}, "value": s}}),
                None => json!({"type": "plain_text_input", "value": v}),
            };
            state.insert(block.to_string(), json!({ *block: entry }));
        }
        let mut stateful = view.clone();
        stateful["state"] = json!({"values": state});
        self.send_envelope(
            "interactive",
            json!({"type": "view_submission", "team": {"id": TEAM, "domain": "gaffer"},
                "user": {"id": user, "username": user, "team_id": TEAM},
                "api_app_id": "A0GAFFER", "trigger_id": "trig-submit", "view": stateful}),
        )
    }

    /// Drops every Socket Mode connection (the client must reconnect).
    pub fn disconnect_all(&self) {
        let mut g = self.lock();
        for s in &g.sockets {
            let _ = s.send(
                json!({"type": "disconnect", "reason": "refresh_requested",
                "debug_info": {"host": "fake"}})
                .to_string(),
            );
        }
        g.sockets.clear();
    }
}

fn strip_state(view: &Value) -> Value {
    let mut v = view.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "team_id", "state", "hash"] {
            o.remove(k);
        }
    }
    v
}

async fn socket_server(listener: tokio::net::TcpListener, inner: Shared) {
    while let Ok((stream, _)) = listener.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            let hello = json!({"type": "hello", "num_connections": 1,
                    "connection_info": {"app_id": "A0GAFFER"},
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600}});
            if sink.send(WsMessage::text(hello.to_string())).await.is_err() {
                return;
            }
            {
                let mut g = inner.0.lock().unwrap();
                g.sockets.push(tx);
                inner.1.notify_all();
            }
            let writer = tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if sink.send(WsMessage::text(m)).await.is_err() {
                        return;
                    }
                }
                let _ = sink.close().await;
            });
            while let Some(Ok(msg)) = stream.next().await {
                let WsMessage::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v["envelope_id"].as_str() {
                    let mut g = inner.0.lock().unwrap();
                    g.acks.insert(id.to_string(), v["payload"].clone());
                    inner.1.notify_all();
                }
            }
            writer.abort();
        });
    }
}

fn query_map(uri: &Uri) -> serde_json::Map<String, Value> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn history(m: &Message) -> Value {
    let mut v = match &m.user {
        Some(u) => json!({"type": "message", "ts": m.ts, "text": m.text, "user": u}),
        None => json!({"type": "message", "ts": m.ts, "text": m.text, "blocks": m.blocks,
            "user": "U0GAFFERBOT", "bot_id": "B0GAFFER"}),
    };
    if let Some(t) = &m.thread_ts {
        v["thread_ts"] = json!(t);
    }
    v
}

async fn call(
    State((inner, ws_url)): State<(Shared, String)>,
    Path(method): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let want = if method == "apps.connections.open" {
        APP_TOKEN
    } else {
        BOT_TOKEN
    };
    if auth != format!("Bearer {want}") {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    let mut body: Value = serde_json::from_str(&body).unwrap_or_else(|_| {
        Value::Object(
            form_urlencoded::parse(body.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    });
    if let Value::Object(o) = &mut body {
        o.extend(query_map(&uri));
    }
    let stall;
    let reply = {
        let mut g = inner.0.lock().unwrap();
        g.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
        });
        let (reply, s) = answer(&mut g, &method, &body, &ws_url);
        stall = s;
        if stall {
            g.stalled = true;
            inner.1.notify_all();
        }
        reply
    };
    if stall {
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = inner.0.lock().unwrap();
            while !g.released {
                g = inner.1.wait(g).unwrap();
            }
        })
        .await
        .unwrap();
    }
    axum::Json(reply)
}

fn answer(g: &mut Inner, method: &str, body: &Value, ws_url: &str) -> (Value, bool) {
    let s = |k: &str| body[k].as_str().unwrap_or("").to_string();
    let reply = match method {
        "auth.test" => {
            json!({"ok": true, "url": "https://gaffer-test.slack.com/", "team": "Gaffer",
            "user": "gaffer", "team_id": TEAM, "user_id": "U0GAFFERBOT", "bot_id": "B0GAFFER"})
        }
        "apps.connections.open" => json!({"ok": true, "url": ws_url}),
        "chat.postMessage" => {
            let channel = s("channel");
            if !g.channels.iter().any(|(id, _)| *id == channel) {
                return (json!({"ok": false, "error": "channel_not_found"}), false);
            }
            g.next_ts += 1;
            g.posts += 1;
            let ts = format!("1700000000.{:06}", g.next_ts);
            let thread_ts = body["thread_ts"].as_str().map(str::to_string);
            g.messages.push(Message {
                channel,
                ts: ts.clone(),
                thread_ts,
                text: s("text"),
                blocks: body["blocks"].clone(),
                broadcast: body["reply_broadcast"] == json!(true),
                updates: 0,
                user: None,
            });
            let stall = g.stall_post == Some(g.posts);
            return (
                json!({"ok": true, "channel": body["channel"], "ts": ts,
                "message": {"type": "message", "ts": ts, "text": body["text"]}}),
                stall,
            );
        }
        "chat.update" => {
            let (channel, ts) = (s("channel"), s("ts"));
            match g
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            {
                Some(m) => {
                    m.text = s("text");
                    m.blocks = body["blocks"].clone();
                    m.updates += 1;
                    json!({"ok": true, "channel": channel, "ts": ts, "text": body["text"],
                        "message": {"type": "message", "ts": ts, "text": body["text"]}})
                }
                None => json!({"ok": false, "error": "message_not_found"}),
            }
        }
        "chat.postEphemeral" => {
            g.ephemerals.push((s("channel"), s("user"), s("text")));
            json!({"ok": true, "message_ts": "1700000000.999999"})
        }
        "conversations.replies" => {
            let (channel, ts) = (s("channel"), s("ts"));
            let msgs: Vec<Value> = g
                .messages
                .iter()
                .filter(|m| {
                    m.channel == channel
                        && (m.ts == ts || m.thread_ts.as_deref() == Some(ts.as_str()))
                })
                .map(history)
                .collect();
            json!({"ok": true, "messages": msgs, "has_more": false,
                "response_metadata": {"next_cursor": ""}})
        }
        "conversations.history" => {
            let channel = s("channel");
            let msgs: Vec<Value> = g
                .messages
                .iter()
                .rev()
                .filter(|m| m.channel == channel && (m.thread_ts.is_none() || m.broadcast))
                .map(history)
                .collect();
            json!({"ok": true, "messages": msgs, "has_more": false,
                "response_metadata": {"next_cursor": ""}})
        }
        "views.open" | "views.update" => {
            let id = if method == "views.open" {
                g.next_view += 1;
                format!("V{}", g.next_view)
            } else {
                let id = s("view_id");
                if !g.views.contains_key(&id) {
                    return (json!({"ok": false, "error": "not_found"}), false);
                }
                id
            };
            let mut view = body["view"].clone();
            if let Value::String(v) = &view {
                view = serde_json::from_str(v).unwrap_or_default();
            }
            view["id"] = json!(id);
            view["team_id"] = json!(TEAM);
            view["state"] = json!({"values": {}});
            view["hash"] = json!("h1");
            g.views.insert(id, view.clone());
            json!({"ok": true, "view": view})
        }
        "views.publish" => {
            let mut view = body["view"].clone();
            if let Value::String(v) = &view {
                view = serde_json::from_str(v).unwrap_or_default();
            }
            if view["type"] != "home" {
                return (json!({"ok": false, "error": "invalid_arguments"}), false);
            }
            let user = s("user_id");
            let e = g.homes.entry(user).or_insert((0, Value::Null));
            e.0 += 1;
            e.1 = view.clone();
            json!({"ok": true, "view": view})
        }
        "conversations.list" => {
            let chans: Vec<Value> = g
                .channels
                .iter()
                .map(|(id, name)| channel(id, name))
                .collect();
            json!({"ok": true, "channels": chans, "response_metadata": {"next_cursor": ""}})
        }
        "conversations.create" => {
            let name = s("name");
            if g.channels.iter().any(|(_, n)| *n == name) {
                json!({"ok": false, "error": "name_taken"})
            } else {
                let id = format!("C{:08}", g.channels.len() + 1);
                g.channels.push((id.clone(), name.clone()));
                json!({"ok": true, "channel": channel(&id, &name)})
            }
        }
        "conversations.join" => {
            let id = s("channel");
            match g.channels.iter().find(|(c, _)| *c == id) {
                Some((id, name)) => json!({"ok": true, "channel": channel(id, name)}),
                None => json!({"ok": false, "error": "channel_not_found"}),
            }
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    (reply, false)
}

fn channel(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "created": 1700000000, "is_channel": true, "is_archived": false})
}
