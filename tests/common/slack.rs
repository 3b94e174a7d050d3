//! A fake Slack Web API on 127.0.0.1 (`/api/<method>`), speaking the real JSON protocol, so
//! the production client (slack-morphism) is what the tests exercise. It checks the bot token
//! and logs every call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method, e.g. `chat.postMessage`.
    pub method: String,
    /// The body, as JSON (form bodies are turned into objects).
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    next_ts: u64,
    /// Channels: (id, name).
    channels: Vec<(String, String)>,
}

/// The fake; stops when dropped.
pub struct FakeSlack {
    /// Its address.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _server: super::Served,
}

/// The bot token the fake accepts.
pub const BOT_TOKEN: &str = "xoxb-test-token";

impl FakeSlack {
    /// Starts the fake.
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/api/{method}", axum::routing::post(call).get(call))
            .with_state(inner.clone());
        let server = super::Served::start(app);
        FakeSlack {
            addr: server.addr,
            inner,
            _server: server,
        }
    }

    /// The API URL to give the client.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Adds an existing channel.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.inner
            .lock()
            .unwrap()
            .channels
            .push((id.into(), name.into()));
    }

    /// The channels: (id, name).
    pub fn channels(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().channels.clone()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }
}

async fn call(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {BOT_TOKEN}") {
        return axum::Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| {
        // Form-encoded calls: key=value pairs.
        Value::Object(
            body.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect(),
        )
    });
    let mut g = inner.lock().unwrap();
    g.calls.push(Call {
        method: method.clone(),
        body: body.clone(),
    });
    let reply = match method.as_str() {
        "auth.test" => {
            json!({"ok": true, "url": "https://gaffer-test.slack.com/", "team": "Gaffer",
            "user": "gaffer", "team_id": "T0GAFFER", "user_id": "U0GAFFERBOT", "bot_id": "B0GAFFER"})
        }
        "chat.postMessage" => {
            g.next_ts += 1;
            let ts = format!("1700000000.{:06}", g.next_ts);
            json!({"ok": true, "channel": body["channel"], "ts": ts,
                "message": {"type": "message", "ts": ts, "text": body["text"]}})
        }
        "chat.update" => {
            json!({"ok": true, "channel": body["channel"], "ts": body["ts"], "text": body["text"],
                "message": {"type": "message", "ts": body["ts"], "text": body["text"]}})
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
            let name = body["name"].as_str().unwrap_or("").to_string();
            if g.channels.iter().any(|(_, n)| *n == name) {
                json!({"ok": false, "error": "name_taken"})
            } else {
                let id = format!("C{:08}", g.channels.len() + 1);
                g.channels.push((id.clone(), name.clone()));
                json!({"ok": true, "channel": channel(&id, &name)})
            }
        }
        "conversations.join" => {
            let id = body["channel"].as_str().unwrap_or("");
            match g.channels.iter().find(|(c, _)| c == id) {
                Some((id, name)) => json!({"ok": true, "channel": channel(id, name)}),
                None => json!({"ok": false, "error": "channel_not_found"}),
            }
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    axum::Json(reply)
}

fn channel(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "created": 1700000000, "is_channel": true, "is_archived": false})
}
