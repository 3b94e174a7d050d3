//! The Events API alternative to Socket Mode (`gaffer slack --listen ADDR`): Slack POSTs
//! slash commands to `/slack/commands`, interactions to `/slack/interactive` and events to
//! `/slack/events`. Every request must carry a valid `X-Slack-Signature` over its exact
//! body, made within 5 minutes and not seen before; anything else gets 401 and is ignored.

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
}

/// The routes, verifying with `signing_secret`.
pub fn router(bot: Arc<Bot>, signing_secret: Vec<u8>) -> axum::Router {
    let state = Arc::new(Endpoint {
        bot,
        verifier: Verifier::new(signing_secret),
    });
    axum::Router::new()
        .route("/slack/commands", axum::routing::post(commands))
        .route("/slack/interactive", axum::routing::post(interactive))
        .route("/slack/events", axum::routing::post(events))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(state)
}

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
    reply(ep.bot.on_command(&form(&body)).await)
}

async fn interactive(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = verified(&ep, &headers, &body) {
        return r.into_response();
    }
    let f = form(&body);
    let Some(payload) = f["payload"]
        .as_str()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return (StatusCode::BAD_REQUEST, "no payload").into_response();
    };
    reply(ep.bot.on_interaction(&payload).await)
}

async fn events(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = verified(&ep, &headers, &body) {
        return r.into_response();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    match v["type"].as_str() {
        // Slack checks the URL when it is configured.
        Some("url_verification") => {
            axum::Json(serde_json::json!({"challenge": v["challenge"]})).into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}
