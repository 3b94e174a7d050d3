//! The embedded connectors on their own: notifiers, the local forge, the scripted agent and
//! the workspace init command.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use gaffer::agent::scripted::ScriptedAgent;
use gaffer::agent::{AgentEvent, AgentRuntime, BuilderSetup, SessionRequest};
use gaffer::chat::webhook::WebhookNotifier;
use gaffer::chat::{LogNotifier, Notification, Notifier};
use gaffer::forge::{ChangeRequest, Forge, ForgeError, LocalForge};
use gaffer::names::TaskRef;

use crate::common::{commit_to_bare, git};

fn note(id: &str) -> Notification {
    Notification {
        id: id.into(),
        task: "a/b/c".into(),
        text: format!("milestone {id}"),
    }
}

#[tokio::test]
async fn log_notifier_delivers_each_id_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("n.log");
    let n = LogNotifier::new(Some(path.clone()), false);
    assert!(n.notify(&note("a/b/c#1")).await.unwrap());
    assert!(!n.notify(&note("a/b/c#1")).await.unwrap());
    // A new process (a restart) still knows.
    let n2 = LogNotifier::new(Some(path.clone()), false);
    assert!(!n2.notify(&note("a/b/c#1")).await.unwrap());
    assert!(n2.notify(&note("a/b/c#2")).await.unwrap());
    let lines = LogNotifier::read(&path);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        ("a/b/c#2".into(), "a/b/c".into(), "milestone a/b/c#2".into())
    );
}

/// The only request a receiver got: it names `id` and is signed with the test secret; its body.
fn the_one_delivery(seen: &[(HeaderMap, Bytes)], id: &str) -> serde_json::Value {
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["x-gaffer-event-id"], id);
    let sig = headers["x-gaffer-signature-256"].to_str().unwrap();
    assert!(gaffer::server::verify_signature(b"s3cret", body, Some(sig)));
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn webhook_posts_signed_json_once_per_id() {
    type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/hook");
    let hook = WebhookNotifier::new(&url, b"s3cret".to_vec(), tmp.path().join("d.log")).unwrap();
    assert!(hook.notify(&note("x#1")).await.unwrap());
    assert!(
        !hook.notify(&note("x#1")).await.unwrap(),
        "second delivery of the same id"
    );
    let again = WebhookNotifier::new(&url, b"s3cret".to_vec(), tmp.path().join("d.log")).unwrap();
    assert!(
        !again.notify(&note("x#1")).await.unwrap(),
        "after a restart"
    );
    let v = the_one_delivery(&seen.lock().unwrap(), "x#1");
    assert_eq!(v["text"], "milestone x#1");
    for bad in ["ftp://n8n.example.com/x", "n8n.example.com/x", "https:///x"] {
        assert!(
            WebhookNotifier::new(bad, vec![], tmp.path().join("e")).is_err(),
            "{bad}"
        );
    }
    server.abort();
}

/// A test CA and a certificate for `localhost` it signed: (CA, server chain, server key).
fn test_ca() -> (
    rustls::pki_types::CertificateDer<'static>,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "gaffer test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (
        ca.der().clone(),
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

/// An https server on 127.0.0.1 (as `localhost`) that records each request's headers and body.
async fn tls_receiver(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> (
    u16,
    Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    tokio::task::JoinHandle<()>,
) {
    use http_body_util::BodyExt;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let s = seen.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let (head, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            s.lock().unwrap().push((head.headers, body));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from_static(b"ok")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, seen, server)
}

#[tokio::test]
async fn webhook_over_https_checks_the_server_certificate() {
    let (ca, chain, key) = test_ca();
    let (port, seen, server) = tls_receiver(chain, key).await;
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{port}/hook");
    let delivered = tmp.path().join("d.log");

    // The system's roots do not know the test CA: refused, and nothing recorded as delivered.
    let untrusting = WebhookNotifier::new(&url, b"s3cret".to_vec(), delivered.clone()).unwrap();
    let err = untrusting.notify(&note("x#1")).await.unwrap_err();
    assert!(err.to_string().contains(&url[..20]), "{err}");
    assert!(seen.lock().unwrap().is_empty());
    assert!(!delivered.exists());

    // Trusting the CA, the same notification goes through once, signed.
    let hook =
        WebhookNotifier::trusting(&url, b"s3cret".to_vec(), delivered.clone(), &[ca]).unwrap();
    assert!(hook.notify(&note("x#1")).await.unwrap());
    assert!(!hook.notify(&note("x#1")).await.unwrap(), "once per id");
    the_one_delivery(&seen.lock().unwrap(), "x#1");
    server.abort();
}

#[tokio::test]
async fn local_forge_opens_once_merges_once_and_refuses_a_moved_head() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin.git");
    git(
        tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            origin.to_str().unwrap(),
        ],
    );
    commit_to_bare(&origin, "main", &[("README", "hi\n")], "init");
    // A mirror with a task branch one commit ahead.
    let mirror = tmp.path().join("mirror.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            origin.to_str().unwrap(),
            mirror.to_str().unwrap(),
        ],
    );
    git(&mirror, &["branch", "gaffer/t", "main"]);
    commit_to_bare(&mirror, "gaffer/t", &[("new.txt", "work\n")], "work");
    let forge = LocalForge::new(tmp.path().join("forge"));
    let req = ChangeRequest {
        repo_url: origin.display().to_string(),
        mirror: mirror.clone(),
        head_branch: "gaffer/t".into(),
        base: "main".into(),
        title: "T".into(),
        body: "B".into(),
        repo: None,
    };
    let a = forge.open_change(&req).await.unwrap();
    let b = forge.open_change(&req).await.unwrap();
    assert_eq!(a.number, b.number, "found, not created twice");
    assert_eq!(forge.changes().len(), 1);
    let head = a.head_sha.clone();
    let err = forge
        .merge(
            &a,
            "0000000000000000000000000000000000000000",
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Blocked(_)), "{err}");
    let m1 = forge.merge(&a, &head, Default::default()).await.unwrap();
    let m2 = forge.merge(&a, &head, Default::default()).await.unwrap();
    assert_eq!(m1.merge_commit, m2.merge_commit);
    assert_eq!(
        git(&origin, &["rev-list", "--merges", "main"])
            .lines()
            .count(),
        1
    );
    assert_eq!(git(&origin, &["show", "main:new.txt"]), "work");
    // Opening again after the merge (a crash before it was recorded) finds the same change.
    assert_eq!(forge.open_change(&req).await.unwrap().number, a.number);
    // New work on the same branch name is a new change.
    commit_to_bare(&mirror, "gaffer/t", &[("more.txt", "more\n")], "more");
    let c = forge.open_change(&req).await.unwrap();
    assert_ne!(c.number, a.number);
    assert_eq!(c.state, "open");
}

#[tokio::test]
async fn scripted_agent_waits_for_answers_and_dedupes_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("proj");
    std::fs::create_dir_all(project.join("repos/app/.gaffer")).unwrap();
    std::fs::write(
        project.join("repos/app/.gaffer/s.yaml"),
        "steps:\n  - question: {text: Pick, options: [{label: A (Recommended)}, {label: B}]}\n  - write: {path: app/out.txt, content: \"{{answer}} for {{task}}\"}\n  - done: ok\n",
    )
    .unwrap();
    let agent = ScriptedAgent::new(tmp.path().join("state"));
    let t = TaskRef::parse("a/b/t1").unwrap();
    let req = SessionRequest {
        task: t.clone(),
        title: "t1".into(),
        permissions: Vec::new(),
        worktrees: Default::default(),
        model: None,
        agent: None,
        script: Some("app/.gaffer/s.yaml".into()),
        builder: BuilderSetup {
            project: t.project.clone(),
            project_dir: project.clone(),
            env: Vec::new(),
            sandbox: false,
            builder_dirs: Vec::new(),
            host: Default::default(),
            pod: None,
        },
        stage: gaffer::agent::Stage::Build,
    };
    let s = agent.ensure_session(&req, None).await.unwrap();
    assert_eq!(agent.ensure_session(&req, Some(&s.id)).await.unwrap(), s);
    agent.send(&t, &s.id, "task", "do it").await.unwrap();
    agent.send(&t, &s.id, "task", "do it").await.unwrap();
    let p = agent.poll(&t, &s.id, 0).await.unwrap();
    let AgentEvent::Question(q) = &p.events[0] else {
        panic!("{p:?}")
    };
    assert_eq!(q.recommended(), "A (Recommended)");
    // Blocked until answered, however often it is polled.
    assert!(agent.poll(&t, &s.id, 1).await.unwrap().waiting);
    assert!(agent.poll(&t, &s.id, 1).await.unwrap().events.is_empty());
    agent
        .answer(
            &t,
            &s.id,
            &gaffer::agent::Reply {
                request_id: &q.request_id,
                question: &q.text,
                choice: &["B".into()],
                note: None,
            },
        )
        .await
        .unwrap();
    let p = agent.poll(&t, &s.id, 1).await.unwrap();
    assert_eq!(p.events, [AgentEvent::Edited(vec!["app/out.txt".into()])]);
    assert_eq!(
        std::fs::read_to_string(project.join("repos/app/out.txt")).unwrap(),
        "B for t1"
    );
    // Replaying a step (after a crash) changes nothing.
    assert_eq!(agent.poll(&t, &s.id, 1).await.unwrap(), p);
    let p = agent.poll(&t, &s.id, 2).await.unwrap();
    assert_eq!(p.events, [AgentEvent::Finished("ok".into())]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join(format!("state/{}.json", s.id))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["prompts"], serde_json::json!(["task"]));
}

#[test]
fn init_command_is_an_argument_vector_from_validated_names() {
    let project: gaffer::state::spec::ProjectSpec = gaffer::state::yaml::parse(
        b"repos:\n  - {name: domain-apis, url: x}\n  - {name: k8s-lab, url: y}\nworkspace: {init: command, run: \"task builder:init BUILDER_NAME={{builder}} REPOS={{repos}} BRANCH={{branch}} T={{task}}\"}\n",
    )
    .unwrap();
    let t = TaskRef::parse("ai-dev/proj-api-service/jwt-auth").unwrap();
    let run = project.workspace.run.clone().unwrap();
    let argv = gaffer::workspace::render_command(&t, &project, &run).unwrap();
    assert_eq!(
        argv,
        [
            "task",
            "builder:init",
            "BUILDER_NAME=ai-dev-proj-api-service",
            "REPOS=domain-apis,k8s-lab",
            "BRANCH=gaffer/jwt-auth",
            "T=jwt-auth"
        ]
    );
    let err = gaffer::workspace::render_command(&t, &project, "make {{nope}}").unwrap_err();
    assert!(err.to_string().contains("cannot render"), "{err}");
}

/// Nested questions chain: q-002's branch starts from q-001's; confirming q-001 moves the task
/// branch to where q-002 was asked; setting q-002 aside puts the worktree back there.
#[test]
fn provisional_branches_chain_confirm_and_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let (_origin, project, ws) = sample_workspace(tmp.path());
    let t = TaskRef::parse("demo/web-api/nest").unwrap();
    ws.prepare(&t, &project).unwrap();
    let dir = ws.repo_dir(&t.project, &"web-api".parse().unwrap());
    let on = || git(&dir, &["branch", "--show-current"]);
    let q1 = t.provisional_branch(&gaffer::names::Qid::new("q-001").unwrap());
    let q2 = t.provisional_branch(&gaffer::names::Qid::new("q-002").unwrap());

    std::fs::write(dir.join("before.txt"), "x").unwrap();
    let (parent1, point1) = ws.branch_off(&t, &project, &q1).unwrap();
    assert_eq!(parent1, "gaffer/nest");
    assert_eq!(on(), q1);
    // Replayed after a crash: same parent, same point.
    assert_eq!(
        ws.branch_off(&t, &project, &q1).unwrap(),
        (parent1.clone(), point1.clone())
    );
    std::fs::write(dir.join("after-q1.txt"), "x").unwrap();
    let (parent2, point2) = ws.branch_off(&t, &project, &q2).unwrap();
    assert_eq!(parent2, q1, "q-002's branch starts from q-001's");
    assert_ne!(point2, point1);
    std::fs::write(dir.join("after-q2.txt"), "x").unwrap();

    // q-001 confirmed: gaffer/nest fast-forwards to q-002's start; the worktree stays on q-002.
    ws.confirm(&t, &project, &parent1, &q1).unwrap();
    assert_eq!(
        git(&dir, &["rev-parse", "gaffer/nest"]),
        point2.values().next().unwrap().as_str()
    );
    assert_eq!(on(), q2);
    // q-002 answered differently (its parent is now gaffer/nest): its work goes aside.
    let kept = ws
        .set_aside(&t, &project, "gaffer/nest", &q2, &point2)
        .unwrap();
    assert_eq!(on(), "gaffer/nest");
    assert!(dir.join("after-q1.txt").exists());
    assert!(
        !dir.join("after-q2.txt").exists(),
        "files went back to the question point"
    );
    assert_eq!(git(&dir, &["show", &format!("{q2}:after-q2.txt")]), "x");
    assert_eq!(
        git(&dir, &["rev-parse", &q2]),
        kept.values().next().unwrap().as_str()
    );
    // Setting aside again (a replay) changes nothing.
    ws.set_aside(&t, &project, "gaffer/nest", &q2, &point2)
        .unwrap();
    assert_eq!(on(), "gaffer/nest");
    assert_eq!(
        git(&dir, &["rev-parse", "HEAD"]),
        point2.values().next().unwrap().as_str()
    );
}

/// The sample app as a bare origin, a project building it, and workspaces under `dir`.
fn sample_workspace(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    gaffer::state::spec::ProjectSpec,
    gaffer::workspace::Workspaces,
) {
    let origin = dir.join("origin.git");
    gaffer::cli::demo::bare_repo_with(&origin, &gaffer::cli::demo::sample_app(), "app").unwrap();
    let project = gaffer::state::yaml::parse(
        format!(
            "repos:\n  - {{name: web-api, url: {}}}\n",
            serde_json::json!(origin.display().to_string())
        )
        .as_bytes(),
    )
    .unwrap();
    (
        origin,
        project,
        gaffer::workspace::Workspaces::new(dir.join("builders")),
    )
}

/// A mirror left half-made by a crash (initialised, no remote yet) is completed, not left
/// failing every fetch: found by the kill -9 test (seed 17872406979948178577).
#[test]
fn a_half_made_mirror_is_completed() {
    let tmp = tempfile::tempdir().unwrap();
    let (origin, project, ws) = sample_workspace(tmp.path());
    let mirror = ws.mirror_dir(&project.repos[0].url);
    std::fs::create_dir_all(&mirror).unwrap();
    git(&mirror, &["init", "--quiet", "--bare"]);
    let t = TaskRef::parse("demo/web-api/crash").unwrap();
    let st = ws.prepare(&t, &project).unwrap();
    assert!(st.values().next().unwrap().base_commit.is_some());
    assert_eq!(
        git(&mirror, &["config", "--get", "remote.origin.url"]),
        origin.display().to_string()
    );
}
