//! The Events API alternative to Socket Mode (`gaffer slack --listen ADDR`): Slack POSTs
//! slash commands to `/slack/commands`, interactions to `/slack/interactive` and events to
//! `/slack/events`. Every request must carry a valid `X-Slack-Signature` over its exact
//! body, made within 5 minutes and not seen before — by this process or, through a record in
//! the data dir, by an earlier one; anything else gets 401 and is ignored. Only then is the
//! body read, as Slack sends it: commands and interactions form-encoded (interactions with
//! their JSON in `payload=`), events as JSON. Any other content type gets 415 and a body that
//! does not parse 400, counted by reason on `/metrics`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::bot::Bot;
use super::verify::Verifier;

struct Endpoint {
    bot: Arc<Bot>,
    verifier: Verifier,
    /// Requests refused after their signature passed, by reason.
    refused: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// The routes, verifying with `signing_secret` and remembering accepted requests in `record`.
pub fn router(bot: Arc<Bot>, signing_secret: Vec<u8>, record: std::path::PathBuf) -> axum::Router {
    let state = Arc::new(Endpoint {
        bot,
        verifier: Verifier::with_record(signing_secret, record),
        refused: Default::default(),
    });
    axum::Router::new()
        .route("/slack/commands", axum::routing::post(commands))
        .route("/slack/interactive", axum::routing::post(interactive))
        .route("/slack/events", axum::routing::post(events))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

async fn metrics(State(ep): State<Arc<Endpoint>>) -> String {
    let mut out = String::new();
    crate::reconcile::metrics::header(
        &mut out,
        "gaffer_slack_requests_refused_total",
        "counter",
        "Signed Slack requests refused for their content type or body, by reason.",
    );
    if let Ok(m) = ep.refused.lock() {
        for (reason, n) in m.iter() {
            out.push_str(&format!(
                "gaffer_slack_requests_refused_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
    }
    out
}

/// Refuses a verified request whose body is not what Slack sends there, counting why.
fn refuse(ep: &Endpoint, reason: &'static str) -> Response {
    tracing::warn!(reason, "refused a signed Slack request");
    if let Ok(mut m) = ep.refused.lock() {
        *m.entry(reason).or_default() += 1;
    }
    match reason {
        "content_type" => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "commands and interactions are form-encoded, events JSON",
        )
            .into_response(),
        _ => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

/// The request's `Content-Type`, as sent.
fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

const FORM: &str = "application/x-www-form-urlencoded";

fn verified(ep: &Endpoint, headers: &HeaderMap, body: &[u8]) -> Result<(), (StatusCode, String)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    ep.verifier
        .verify(
            jiff::Timestamp::now().as_second(),
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            body,
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "refused a Slack request");
            (StatusCode::UNAUTHORIZED, e.to_string())
        })
}

/// A form body as a JSON object of strings.
fn form(body: &[u8]) -> Value {
    Value::Object(
        form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect::<Map<String, Value>>(),
    )
}

/// Where a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/slack/commands`
    Commands,
    /// `/slack/interactive`
    Interactive,
    /// `/slack/events`
    Events,
}

/// A verified request's body, read as Slack sends it to that route.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A slash command's form, as a JSON object of strings.
    Command(Value),
    /// Slack's certificate check on the commands URL.
    SslCheck,
    /// An interaction payload (`block_actions`, `view_submission`).
    Interaction(Value),
    /// The Events API's URL check: answer with this challenge.
    UrlVerification(Value),
    /// Any other event (the bot subscribes to none).
    Event(Value),
}

/// Reads `body` as Slack sends it to `route` with the `Content-Type` `content_type`, or
/// names why it is not (the metric's reason): nothing here acts on it.
pub fn decode(route: Route, content_type: &str, body: &[u8]) -> Result<Inbound, &'static str> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let want = match route {
        Route::Commands | Route::Interactive => FORM,
        Route::Events => "application/json",
    };
    if media != want {
        return Err("content_type");
    }
    match route {
        Route::Commands => {
            let f = form(body);
            if f["ssl_check"] == "1" {
                Ok(Inbound::SslCheck)
            } else if f["command"].is_string() {
                Ok(Inbound::Command(f))
            } else {
                Err("no_command")
            }
        }
        Route::Interactive => {
            let f = form(body);
            let payload = f["payload"].as_str().ok_or("no_payload")?;
            let v = serde_json::from_str::<Value>(payload).map_err(|_| "json")?;
            Ok(Inbound::Interaction(v))
        }
        Route::Events => {
            let v = serde_json::from_slice::<Value>(body).map_err(|_| "json")?;
            Ok(match v["type"].as_str() {
                Some("url_verification") => Inbound::UrlVerification(v["challenge"].clone()),
                _ => Inbound::Event(v),
            })
        }
    }
}

fn reply(r: super::actions::Reply) -> Response {
    match r.to_json() {
        Some(v) => axum::Json(v).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

async fn commands(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = verified(&ep, &headers, &body) {
        return r.into_response();
    }
    match decode(Route::Commands, content_type(&headers), &body) {
        // Slack checks the endpoint's certificate with this; nothing to do.
        Ok(Inbound::SslCheck) => StatusCode::OK.into_response(),
        Ok(Inbound::Command(f)) => reply(ep.bot.on_command(&f).await),
        Ok(_) => StatusCode::OK.into_response(),
        Err(reason) => refuse(&ep, reason),
    }
}

async fn interactive(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = verified(&ep, &headers, &body) {
        return r.into_response();
    }
    match decode(Route::Interactive, content_type(&headers), &body) {
        Ok(Inbound::Interaction(p)) => reply(ep.bot.on_interaction(&p).await),
        Ok(_) => StatusCode::OK.into_response(),
        Err(reason) => refuse(&ep, reason),
    }
}

async fn events(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = verified(&ep, &headers, &body) {
        return r.into_response();
    }
    match decode(Route::Events, content_type(&headers), &body) {
        // Slack checks the URL when it is configured.
        Ok(Inbound::UrlVerification(challenge)) => {
            axum::Json(serde_json::json!({ "challenge": challenge })).into_response()
        }
        Ok(Inbound::Event(v)) => {
            if v["type"] == "event_callback" {
                ep.bot.on_event(&v["event"]).await;
            }
            StatusCode::OK.into_response()
        }
        Ok(_) => StatusCode::OK.into_response(),
        Err(reason) => refuse(&ep, reason),
    }
}
