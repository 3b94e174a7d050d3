//! The leader lease: two `gaffer reconcile` processes against one fake Kubernetes API and one
//! state repository. Only one acts; SIGKILL of the leader mid-task hands the task to the
//! other within the lease's duration, which carries it on with nothing repeated; SIGTERM
//! releases the lease, so the next one leads without waiting for it to expire, and
//! promotes the task (merged once).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gaffer::names::{Qid, TaskRef};
use gaffer::state::status::Phase;

use crate::common::kube::FakeKube;
use crate::common::{Proc, commit_as, snapshot_of};

struct Two {
    tmp: tempfile::TempDir,
    state: PathBuf,
    kubeconfig: PathBuf,
    fake: FakeKube,
}

impl Two {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let state = crate::common::demo_repos(tmp.path(), "1h");
        let fake = FakeKube::start();
        fake.namespace("gaffer");
        let kubeconfig = tmp.path().join("admin.kubeconfig");
        fake.write_kubeconfig(&kubeconfig);
        Two {
            tmp,
            state,
            kubeconfig,
            fake,
        }
    }

    /// A reconciler holding out for the lease; its log is `<name>.log`. The data and the
    /// builders' folders are shared, as the PVC is when a pod takes over from another.
    fn reconciler(&self, name: &str, port: u16) -> Proc {
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        Proc(
            crate::common::gaffer(self.tmp.path())
                .env("KUBECONFIG", &self.kubeconfig)
                .env("POD_NAME", name)
                .env("RUST_LOG", "gaffer=info")
                .args(["reconcile", "--lab", "render-only"])
                .args([
                    "--leader-lease",
                    "gaffer/gaffer-reconciler",
                    "--lease-secs",
                    "2",
                ])
                .args(["--state", self.state.to_str().unwrap()])
                .arg(format!("--listen=127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(self.tmp.path().join("data"))
                .arg("--builders")
                .arg(self.tmp.path().join("builders"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(format!("{name}.log"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    fn holder(&self) -> Option<String> {
        self.fake
            .get(
                "coordination.k8s.io/v1",
                "leases",
                "gaffer",
                "gaffer-reconciler",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    }

    /// Waits until `what` holds, or fails with both logs.
    fn until(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\nA:\n{}\nB:\n{}\nC:\n{}",
                self.log("a"),
                self.log("b"),
                self.log("c")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The status code of `GET path` on 127.0.0.1:`port` (0 when nothing answers).
fn status_of(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn task() -> TaskRef {
    TaskRef::parse("demo/web-api/jwt").unwrap()
}

fn phase(state: &Path, scratch: &Path) -> Option<Phase> {
    snapshot_of(state, scratch)
        .task(&task())
        .and_then(|e| e.status.as_ref().map(|s| s.phase))
}

#[test]
fn one_reconciler_acts_a_killed_leader_is_taken_over_and_a_stopped_one_hands_over() {
    let two = Two::new();
    let scratch = two.tmp.path().join("ro");
    let ports = [0; 3].map(|_| crate::common::free_port());
    let a = two.reconciler("a", ports[0]);
    two.until("a to lead", || two.log("a").contains("leading"));
    let b = two.reconciler("b", ports[1]);
    two.until("b to wait", || {
        two.log("b").contains("waiting for the lease")
    });
    assert_eq!(two.holder().as_deref(), Some("a"));
    // The waiting one is alive but not ready; the leader is ready.
    two.until("b to answer", || status_of(ports[1], "/livez") == 200);
    assert_eq!(status_of(ports[1], "/healthz"), 503);
    two.until("a to be ready", || status_of(ports[0], "/healthz") == 200);

    commit_as(
        &two.state,
        gaffer::cli::demo::PERSON,
        &[(
            "projects/demo/web-api/tasks/jwt/task.yaml",
            "title: Implement JWT authentication\n",
        )],
        "task",
    );
    // Mid-task: the builder asked its first question and waits for the answer.
    let q1 = Qid::new("q-001").unwrap();
    two.until("the first question", || {
        snapshot_of(&two.state, &scratch)
            .task(&task())
            .is_some_and(|e| e.questions.contains_key(&q1))
    });
    assert!(
        !two.log("b").contains("reconciler started"),
        "b acted while a led"
    );

    // SIGKILL the leader: b takes over once the lease has not moved for its duration.
    a.kill9();
    two.until("b to lead", || two.log("b").contains("leading"));
    assert_eq!(two.holder().as_deref(), Some("b"));
    two.until("b to be ready", || status_of(ports[1], "/healthz") == 200);
    // A person answers each question as it comes; b carries the task to review.
    let answered = std::cell::RefCell::new(std::collections::BTreeSet::new());
    two.until("review", || {
        let snap = snapshot_of(&two.state, &scratch);
        let Some(e) = snap.task(&task()) else {
            return false;
        };
        for (qid, q) in &e.questions {
            if q.decision.is_none() && answered.borrow_mut().insert(qid.to_string()) {
                let choice = q
                    .options
                    .last()
                    .map(|o| o.label.clone())
                    .unwrap_or_default();
                commit_as(
                    &two.state,
                    gaffer::cli::demo::PERSON,
                    &[(
                        &format!("projects/demo/web-api/tasks/jwt/answers/{qid}.yaml"),
                        &format!(
                            "choice: {}\nby: {}\n",
                            serde_json::Value::String(choice),
                            gaffer::cli::demo::PERSON
                        ),
                    )],
                    "answer",
                );
            }
        }
        phase(&two.state, &scratch) == Some(Phase::InReview)
    });
    assert_eq!(answered.borrow().len(), 2, "each question asked once");
    // Nothing was done twice: each question asked once, each milestone of the builder's
    // work once, each prompt sent once.
    let snap = snapshot_of(&two.state, &scratch);
    let e = snap.task(&task()).unwrap();
    let texts: Vec<&str> = e
        .progress
        .as_ref()
        .unwrap()
        .milestones
        .iter()
        .map(|m| m.text.as_str())
        .filter(|t| t.starts_with('✔') || t.starts_with('📝') || t.starts_with('🏁'))
        .collect();
    let mut unique = texts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(texts.len(), unique.len(), "{texts:#?}");
    let session: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            two.tmp
                .path()
                .join("data/scripted/scripted-demo-web-api-jwt.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let prompts: Vec<&str> = session["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let mut unique = prompts.clone();
    unique.dedup();
    assert_eq!(prompts, unique, "a prompt was sent twice");

    // SIGTERM: b finishes, releases the lease, and c leads without waiting it out.
    let c = two.reconciler("c", ports[2]);
    two.until("c to wait", || {
        two.log("c").contains("waiting for the lease")
    });
    let _ = Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status();
    two.until("b to release", || {
        two.log("b").contains("released the leader lease")
    });
    two.until("c to lead", || two.log("c").contains("leading"));
    assert_eq!(two.holder().as_deref(), Some("c"));

    // c finishes the task: approved in review, merged once, promoted.
    let st = snapshot_of(&two.state, &scratch)
        .task(&task())
        .and_then(|e| e.status.clone())
        .unwrap();
    commit_as(
        &two.state,
        gaffer::cli::demo::PERSON,
        &[(
            "projects/demo/web-api/tasks/jwt/approvals/ok.yaml",
            &crate::common::approval_body(gaffer::cli::demo::PERSON, Some(&st)),
        )],
        "approve",
    );
    two.until("promoted", || {
        phase(&two.state, &scratch) == Some(Phase::Promoted)
    });
    let merges = crate::common::git(
        &two.tmp.path().join("origins/web-api.git"),
        &["log", "--merges", "--oneline", "main"],
    );
    assert_eq!(merges.lines().count(), 1, "merged once: {merges}");
    drop(c);
    drop(b);
}
