//! The daemon's HTTP endpoints, driven in-process through the real router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gaffer::server::{Metrics, ServerState, app, sign};
use gaffer::store::watch::{self, Reason};
use tower::ServiceExt;

const SECRET: &[u8] = b"It's a Secret to Everybody";

type Seen = Arc<std::sync::Mutex<Vec<(String, u64)>>>;

fn state() -> (
    Arc<ServerState>,
    tokio::sync::mpsc::UnboundedReceiver<Reason>,
) {
    let (s, rx, _) = state_seeing();
    (s, rx)
}

/// The state, and the pull requests the hook was called for.
fn state_seeing() -> (
    Arc<ServerState>,
    tokio::sync::mpsc::UnboundedReceiver<Reason>,
    Seen,
) {
    let (waker, rx) = watch::channel();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let s = ServerState {
        webhook_secret: Some(SECRET.to_vec()),
        waker: Some(waker),
        metrics: Arc::new(Metrics::default()),
        runtime: None,
        on_pull_request: Some(Arc::new(move |repo: &str, n: u64| {
            s2.lock().unwrap().push((repo.to_string(), n));
            usize::from(repo == "example/web-api")
        })),
        usage: None,
    };
    (Arc::new(s), rx, seen)
}

#[tokio::test]
async fn signed_review_and_pull_request_events_wake_their_task_unsigned_ones_nothing() {
    let (s, _rx, seen) = state_seeing();
    let review = r#"{"action":"submitted","review":{"state":"approved","user":{"login":"alice"}},"pull_request":{"number":7},"repository":{"full_name":"example/web-api"}}"#;
    let resp = app(s.clone())
        .oneshot(webhook("pull_request_review", review, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app(s.clone())
        .oneshot(webhook(
            "pull_request_review",
            review,
            Some(sign(b"nope", review.as_bytes())),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(seen.lock().unwrap().is_empty(), "nothing looked at");
    let resp = app(s.clone())
        .oneshot(webhook(
            "pull_request_review",
            review,
            Some(sign(SECRET, review.as_bytes())),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let pr = r#"{"action":"synchronize","pull_request":{"number":9},"repository":{"full_name":"someone/else"}}"#;
    let resp = app(s.clone())
        .oneshot(webhook(
            "pull_request",
            pr,
            Some(sign(SECRET, pr.as_bytes())),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    assert_eq!(&body[..], b"no task has this pull request\n");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("example/web-api".to_string(), 7),
            ("someone/else".to_string(), 9)
        ]
    );
}

fn webhook(event: &str, body: &str, sig: Option<String>) -> Request<Body> {
    let mut b = Request::post("/webhooks/github")
        .header("x-github-event", event)
        .header("content-type", "application/json");
    if let Some(s) = sig {
        b = b.header("x-hub-signature-256", s);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn signed_push_wakes_the_syncer() {
    let (s, mut rx) = state();
    let body = r#"{"ref":"refs/heads/main","after":"abc"}"#;
    let resp = app(s.clone())
        .oneshot(webhook("push", body, Some(sign(SECRET, body.as_bytes()))))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(rx.try_recv().unwrap(), Reason::Webhook);
}

#[test]
fn github_documented_signature_verifies() {
    // The example from GitHub's "Validating webhook deliveries" documentation.
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert!(gaffer::server::verify_signature(
        SECRET,
        b"Hello, World!",
        Some(sig)
    ));
    assert!(!gaffer::server::verify_signature(
        SECRET,
        b"Hello, World?",
        Some(sig)
    ));
}

#[tokio::test]
async fn bad_missing_or_sha1_signatures_are_rejected() {
    let (s, mut rx) = state();
    let body = r#"{"ref":"refs/heads/main"}"#;
    let bad = [
        None,
        Some("sha256=00".to_string()),
        Some(sign(b"wrong secret", body.as_bytes())),
        Some("sha1=0123456789abcdef0123456789abcdef01234567".to_string()),
        Some(sign(SECRET, b"a different body")),
    ];
    for sig in bad {
        let resp = app(s.clone())
            .oneshot(webhook("push", body, sig.clone()))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{sig:?}");
    }
    assert!(rx.try_recv().is_err(), "nothing woke");
    let resp = app(s.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("gaffer_webhooks_total{result=\"rejected\"} 5"),
        "{text}"
    );
}

#[tokio::test]
async fn other_events_are_ignored_and_health_answers() {
    let (s, mut rx) = state();
    let body = "{}";
    let resp = app(s.clone())
        .oneshot(webhook("issues", body, Some(sign(SECRET, body.as_bytes()))))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(rx.try_recv().is_err());
    let resp = app(s)
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

fn delivery(event: &str, content_type: &str, body: Vec<u8>, secret: &[u8]) -> Request<Body> {
    Request::post("/webhooks/github")
        .header("x-github-event", event)
        .header("content-type", content_type)
        .header("x-hub-signature-256", sign(secret, &body))
        .body(Body::from(body))
        .unwrap()
}

async fn metrics_text(s: Arc<ServerState>) -> String {
    let resp = app(s)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn githubs_default_form_encoded_delivery_is_read_not_dropped() {
    // A hook made in GitHub's settings page sends `payload=<json>` unless changed.
    let (s, _rx, seen) = state_seeing();
    let json = crate::common::real_payload("github", "pull_request_opened.payload.json");
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let resp = app(s.clone())
        .oneshot(delivery(
            "pull_request",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
            SECRET,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        *seen.lock().unwrap(),
        [("Codertocat/Hello-World".to_string(), 2)]
    );
}

#[tokio::test]
async fn octokits_payload_examples_are_read_as_github_sends_them() {
    let (s, mut rx, seen) = state_seeing();
    for (event, file) in [
        ("pull_request", "pull_request_opened.payload.json"),
        ("pull_request", "pull_request_synchronize.payload.json"),
        ("pull_request", "pull_request_closed.payload.json"),
        (
            "pull_request_review",
            "pull_request_review_submitted.payload.json",
        ),
        (
            "pull_request_review",
            "pull_request_review_dismissed.payload.json",
        ),
        ("push", "push_payload.json"),
        ("ping", "ping_payload.json"),
        ("ping", "ping_with-app_id.payload.json"),
    ] {
        let body = crate::common::real_payload("github", file);
        let resp = app(s.clone())
            .oneshot(delivery(event, "application/json", body, SECRET))
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{file}: {}", resp.status());
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        5,
        "every pull request event named its PR"
    );
    assert_eq!(
        rx.try_recv().unwrap(),
        Reason::Webhook,
        "the push woke the syncer"
    );
    // octokit's signature test vector, as it is.
    let headers: serde_json::Value = serde_json::from_slice(&crate::common::real_payload(
        "github",
        "octokit-webhooks-methods_foo-bar.headers.json",
    ))
    .unwrap();
    let body = crate::common::real_payload("github", "octokit-webhooks-methods_foo-bar.payload");
    assert!(gaffer::server::verify_signature(
        headers["secret"].as_str().unwrap().as_bytes(),
        &body,
        headers["x-hub-signature-256"].as_str()
    ));
}

#[tokio::test]
async fn an_unparseable_signed_delivery_is_refused_and_counted_not_acknowledged() {
    let (s, mut rx) = state();
    let cases: [(&str, &[u8], StatusCode); 4] = [
        ("application/json", b"{not json", StatusCode::BAD_REQUEST),
        (
            "application/x-www-form-urlencoded",
            b"other=1",
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/x-www-form-urlencoded",
            b"payload=%7Bnope",
            StatusCode::BAD_REQUEST,
        ),
        ("text/plain", b"{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ];
    for (ct, body, want) in cases {
        let resp = app(s.clone())
            .oneshot(delivery("push", ct, body.to_vec(), SECRET))
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            want,
            "{ct} {:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(rx.try_recv().is_err(), "nothing woke");
    let text = metrics_text(s).await;
    for line in [
        "gaffer_webhooks_malformed_total{reason=\"json\"} 2",
        "gaffer_webhooks_malformed_total{reason=\"no_payload\"} 1",
        "gaffer_webhooks_malformed_total{reason=\"content_type\"} 1",
        "gaffer_webhooks_total{result=\"accepted\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
