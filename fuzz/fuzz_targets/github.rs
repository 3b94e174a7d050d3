#![no_main]
//! GitHub webhook deliveries through the daemon's real router: correctly signed (the
//! signature is checked before anything is parsed, so only signed bodies reach the parser),
//! with any content type and event.
//!
//! Input: `content-type\nevent\nbody`.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gaffer::server::{Metrics, ServerState, app, sign};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const SECRET: &[u8] = b"fuzz";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(ct), Some(event), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let mut req = Request::post("/webhooks/github")
        .header("x-hub-signature-256", sign(SECRET, body))
        .body(Body::from(body.to_vec()))
        .expect("a request");
    for (name, value) in [("content-type", ct), ("x-github-event", event)] {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(value) {
            req.headers_mut().insert(name, v);
        }
    }
    let state = Arc::new(ServerState {
        webhook_secret: Some(SECRET.to_vec()),
        waker: None,
        metrics: Arc::new(Metrics::default()),
        runtime: None,
        on_pull_request: Some(Arc::new(|repo: &str, number: u64| {
            assert!(!repo.is_empty() && number > 0);
            1
        })),
        usage: None,
    });
    let status =
        runtime().block_on(async { app(state).oneshot(req).await.expect("infallible").status() });
    assert!(
        [
            StatusCode::OK,
            StatusCode::ACCEPTED,
            StatusCode::BAD_REQUEST,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        ]
        .contains(&status),
        "{status}"
    );
});
