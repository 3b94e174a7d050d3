//! The daemon's HTTP side: `/healthz`, `/metrics` and webhook receivers.
//!
//! [`app`] builds the router without binding a port, so tests drive it in-process. Webhooks
//! are accepted only with a valid `X-Hub-Signature-256` (HMAC-SHA256 over the raw body,
//! compared in constant time, before anything is parsed); a verified GitHub `push` wakes the
//! state syncer at once. GitHub sends a delivery as `application/json` or, the default of a
//! hook made in its settings page, `application/x-www-form-urlencoded` with the JSON in
//! `payload=`; both are read. Any other content type is refused with 415 and a signed body
//! that does not parse with 400, each counted by reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::watch::{Reason, Waker};

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Webhooks accepted.
    pub webhooks_accepted: AtomicU64,
    /// Webhooks refused (bad or missing signature).
    pub webhooks_rejected: AtomicU64,
    /// Signed webhooks refused because their body was not one GitHub sends: by reason.
    pub webhooks_malformed: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn malformed(&self, reason: &'static str) {
        if let Ok(mut m) = self.webhooks_malformed.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }
}

/// Wakes the tasks whose pull request (`owner/name`, number) a webhook named.
pub type PullRequestHook = Arc<dyn Fn(&str, u64) -> usize + Send + Sync>;

/// What the HTTP handlers need.
pub struct ServerState {
    /// The shared secret configured on the GitHub webhook; None disables webhooks.
    pub webhook_secret: Option<Vec<u8>>,
    /// Wakes the state syncer.
    pub waker: Option<Waker>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The reconcile runtime's counters, when a reconciler runs in this process.
    pub runtime: Option<Arc<crate::reconcile::metrics::ReconcileMetrics>>,
    /// Pull request and review events wake their tasks through this.
    pub on_pull_request: Option<PullRequestHook>,
    /// What the builders used so far, by project (read from the state at each scrape).
    pub usage: Option<UsageSource>,
}

/// Sums the usage recorded in the state by project (`category/project`).
pub type UsageSource =
    Arc<dyn Fn() -> std::collections::BTreeMap<String, crate::state::status::Usage> + Send + Sync>;

/// The usage counters by project, in Prometheus text format.
pub fn render_usage(
    out: &mut String,
    by_project: &std::collections::BTreeMap<String, crate::state::status::Usage>,
) {
    use crate::reconcile::metrics::header;
    header(
        out,
        "gaffer_model_requests_total",
        "counter",
        "Builders' model requests, by project.",
    );
    for (p, u) in by_project {
        out.push_str(&format!(
            "gaffer_model_requests_total{{project=\"{p}\"}} {}\n",
            u.requests
        ));
    }
    header(
        out,
        "gaffer_model_tokens_total",
        "counter",
        "Tokens the builders' model requests used, by project and kind.",
    );
    for (p, u) in by_project {
        for (kind, n) in [
            ("input", u.input),
            ("output", u.output),
            ("reasoning", u.reasoning),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
        ] {
            out.push_str(&format!(
                "gaffer_model_tokens_total{{project=\"{p}\",kind=\"{kind}\"}} {n}\n"
            ));
        }
    }
    header(
        out,
        "gaffer_model_cost_total",
        "counter",
        "The cost of the priced model requests (the provider's currency), by project.",
    );
    for (p, u) in by_project {
        out.push_str(&format!(
            "gaffer_model_cost_total{{project=\"{p}\"}} {}\n",
            u.cost
        ));
    }
    header(
        out,
        "gaffer_model_unpriced_requests_total",
        "counter",
        "Model requests whose model has no price (their cost is unknown), by project.",
    );
    for (p, u) in by_project {
        out.push_str(&format!(
            "gaffer_model_unpriced_requests_total{{project=\"{p}\"}} {}\n",
            u.unpriced
        ));
    }
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("webhooks", &self.webhook_secret.is_some())
            .finish()
    }
}

/// The router: `GET /healthz` (ready: this reconciler acts), `GET /livez` (alive),
/// `GET /metrics`, `POST /webhooks/github`.
pub fn app(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/webhooks/github", post(github_webhook))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<ServerState>>) -> String {
    let m = &state.metrics;
    let mut out = state
        .runtime
        .as_ref()
        .map(|r| r.render())
        .unwrap_or_default();
    crate::reconcile::metrics::header(
        &mut out,
        "gaffer_webhooks_total",
        "counter",
        "Webhooks received, by result.",
    );
    for (result, n) in [
        ("accepted", &m.webhooks_accepted),
        ("rejected", &m.webhooks_rejected),
    ] {
        out.push_str(&format!(
            "gaffer_webhooks_total{{result=\"{result}\"}} {}\n",
            n.load(Ordering::Relaxed)
        ));
    }
    crate::reconcile::metrics::header(
        &mut out,
        "gaffer_webhooks_malformed_total",
        "counter",
        "Signed webhooks refused for their content type or body, by reason.",
    );
    if let Ok(by_reason) = m.webhooks_malformed.lock() {
        for (reason, n) in by_reason.iter() {
            out.push_str(&format!(
                "gaffer_webhooks_malformed_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
    }
    if let Some(usage) = &state.usage {
        render_usage(&mut out, &usage());
    }
    out
}

/// Why a signed delivery was refused before it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Neither JSON nor a form: 415.
    ContentType,
    /// A form without a `payload` field: 400.
    NoPayload,
    /// The JSON does not parse: 400.
    Json,
}

impl Malformed {
    /// The metric label and the status and text of the answer.
    pub fn answer(self) -> (&'static str, StatusCode, &'static str) {
        match self {
            Malformed::ContentType => (
                "content_type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a GitHub delivery is application/json or application/x-www-form-urlencoded\n",
            ),
            Malformed::NoPayload => (
                "no_payload",
                StatusCode::BAD_REQUEST,
                "a form-encoded delivery carries its JSON in payload=\n",
            ),
            Malformed::Json => ("json", StatusCode::BAD_REQUEST, "the payload is not JSON\n"),
        }
    }
}

/// The JSON payload of a GitHub delivery, whichever content type its hook was made with.
pub fn github_payload(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, Malformed> {
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => serde_json::from_slice(body).map_err(|_| Malformed::Json),
        "application/x-www-form-urlencoded" => {
            let payload = form_urlencoded::parse(body)
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v.into_owned())
                .ok_or(Malformed::NoPayload)?;
            serde_json::from_str(&payload).map_err(|_| Malformed::Json)
        }
        _ => Err(Malformed::ContentType),
    }
}

/// Checks a `sha256=<hex>` signature of `body` with `secret`, in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Computes the `sha256=<hex>` header value for `body` (for tests and clients).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn github_webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(secret) = &state.webhook_secret else {
        return (StatusCode::NOT_FOUND, "webhooks are not configured\n");
    };
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !verify_signature(secret, &body, sig) {
        state
            .metrics
            .webhooks_rejected
            .fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256\n",
        );
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let v = match github_payload(content_type, &body) {
        Ok(v) => v,
        Err(why) => {
            let (reason, status, text) = why.answer();
            tracing::warn!(reason, "refused a signed GitHub delivery");
            state.metrics.malformed(reason);
            return (status, text);
        }
    };
    state
        .metrics
        .webhooks_accepted
        .fetch_add(1, Ordering::Relaxed);
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match event {
        "push" => {
            if let Some(w) = &state.waker {
                w.wake(Reason::Webhook);
            }
            (StatusCode::ACCEPTED, "checking the state repository\n")
        }
        "pull_request" | "pull_request_review" => {
            let repo = v["repository"]["full_name"].as_str().unwrap_or_default();
            let number = v["pull_request"]["number"].as_u64().unwrap_or_default();
            let woke = match &state.on_pull_request {
                Some(hook) if !repo.is_empty() && number > 0 => hook(repo, number),
                _ => 0,
            };
            if woke > 0 {
                (StatusCode::ACCEPTED, "waking the task\n")
            } else {
                (StatusCode::ACCEPTED, "no task has this pull request\n")
            }
        }
        "ping" => (StatusCode::OK, "pong\n"),
        _ => (StatusCode::ACCEPTED, "ignored\n"),
    }
}

/// Resolves on ctrl-c or SIGTERM; shared by every server and loop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// What a reconciler waiting for the leader lease serves on its address: alive (`/livez`,
/// so a liveness probe leaves it be) but not ready (`/healthz` 503, so a Service sends
/// webhooks to the leader).
pub fn waiting_app() -> Router {
    Router::new()
        .route(
            "/livez",
            get(|| async { "ok, waiting for the leader lease\n" }),
        )
        .route(
            "/healthz",
            get(|| async {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the leader lease\n",
                )
            }),
        )
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn usage_is_exported_by_project() {
        let by = std::collections::BTreeMap::from([(
            "ai-dev/api".to_string(),
            crate::state::status::Usage {
                requests: 4,
                input: 100,
                output: 20,
                cost: 0.25,
                unpriced: 1,
                ..Default::default()
            },
        )]);
        let mut out = String::new();
        render_usage(&mut out, &by);
        for line in [
            "gaffer_model_requests_total{project=\"ai-dev/api\"} 4",
            "gaffer_model_tokens_total{project=\"ai-dev/api\",kind=\"input\"} 100",
            "gaffer_model_tokens_total{project=\"ai-dev/api\",kind=\"output\"} 20",
            "gaffer_model_cost_total{project=\"ai-dev/api\"} 0.25",
            "gaffer_model_unpriced_requests_total{project=\"ai-dev/api\"} 1",
            "# TYPE gaffer_model_tokens_total counter",
        ] {
            assert!(out.contains(line), "{line}\n{out}");
        }
    }
}
