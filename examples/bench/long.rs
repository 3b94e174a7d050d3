//! Weeks-long builders:
//!
//! - P9: the cost of one builder poll — reading what is new in the session and deriving its
//!   events, as `OpenCode::poll` does after its live-state requests — in a session of 10,000
//!   messages against one of 10. OpenCode is an in-process fake that speaks OpenCode
//!   1.18.33's message paging (`GET /session/{id}/message?limit=N&before=C`, newest page
//!   first, `X-Next-Cursor`; docs/opencode.md), with messages of ~3.8 KB as the real one
//!   stores them; the full read each poll used to make is measured beside it.
//! - P10: gaffer's RSS and CPU per idle tmux builder (see [`super::pods::idle`]).
//! - WEEK: the simulated week of `tests/test_week.rs`, run as that test (release build), its
//!   table read from its output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use gaffer::agent::opencode::client::Client;
use gaffer::agent::opencode::history::{self, Live, Tail};

use super::Res;

/// One stored message as OpenCode returns it: an assistant step with a finished tool call
/// whose output fills it to about 3.8 KB.
fn message(i: usize) -> String {
    serde_json::json!({
        "info": {"id": format!("msg_{i:012}"), "role": "assistant",
                 "time": {"created": 1_000 + i, "completed": 1_001 + i},
                 "finish": "tool-calls", "tokens": {"input": 10, "output": 5}, "cost": 0.0},
        "parts": [{"type": "tool", "tool": "bash", "callID": format!("call_{i}"),
                   "state": {"status": "completed", "input": {"command": "ls"},
                             "output": "x".repeat(3_600)}}]
    })
    .to_string()
}

async fn messages(
    State(all): State<Arc<Vec<String>>>,
    Path(_session): Path<String>,
    uri: axum::http::Uri,
) -> impl IntoResponse {
    let q: HashMap<String, String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let end = q
        .get("before")
        .and_then(|b| b.parse::<usize>().ok())
        .unwrap_or(all.len())
        .min(all.len());
    let start = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .map_or(0, |l| end.saturating_sub(l));
    let body = format!("[{}]", all[start..end].join(","));
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("header"));
    if start > 0 && q.contains_key("limit") {
        headers.insert("x-next-cursor", start.to_string().parse().expect("header"));
    }
    (headers, body)
}

/// A fake OpenCode holding one session of `n` messages; its client.
async fn fake(n: usize) -> Res<(Client, tokio::task::JoinHandle<()>)> {
    let all: Arc<Vec<String>> = Arc::new((0..n).map(message).collect());
    let app = axum::Router::new()
        .route("/session/{id}/message", axum::routing::get(messages))
        .with_state(all);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((Client::new(port, "bench"), server))
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The poll's p50 in a session of `n` messages, reading only what is new, and reading
/// everything (as before).
pub async fn poll_cost(n: usize, polls: usize, full_polls: usize) -> Res<(Duration, Duration)> {
    let (client, server) = fake(n).await?;
    let live = Live::default();
    // Where a long-running reconciler stands: everything recorded, the newest message read.
    let whole = client.messages("ses_bench").await?;
    let settled = history::derive_after(&Tail::default(), &whole, &live, usize::MAX).tail;
    let mut paged = Vec::with_capacity(polls);
    for _ in 0..polls {
        let t = Instant::now();
        let last = settled.last_id.as_deref().ok_or("nothing settled")?;
        let after = client
            .messages_after("ses_bench", last, 8)
            .await?
            .ok_or("the settled message is gone")?;
        let d = history::derive_after(&settled, &after, &live, usize::MAX);
        std::hint::black_box(d);
        paged.push(t.elapsed());
    }
    let mut full = Vec::with_capacity(full_polls);
    for _ in 0..full_polls {
        let t = Instant::now();
        let all = client.messages("ses_bench").await?;
        std::hint::black_box(history::derive(&all, &live));
        full.push(t.elapsed());
    }
    server.abort();
    Ok((p50(paged), p50(full)))
}

/// Runs the simulated week test in release; its wall time and its end-of-week table.
pub fn week() -> Res<(Duration, String)> {
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", "--release", "--test", "runner", "--", "--exact"])
        .arg("test_week::a_simulated_week_ends_with_every_task_promoted_each_effect_once_and_bounded_resources")
        .arg("--nocapture")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the simulated week failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let table: String = stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let wall = table
        .lines()
        .find(|l| l.starts_with("| wall time |"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().trim_end_matches(" s").parse::<f64>().ok())
        .map_or_else(|| start.elapsed(), Duration::from_secs_f64);
    Ok((wall, table))
}
