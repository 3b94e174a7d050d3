//! The reconciler as a real process (`gaffer reconcile`) against real git repositories, with
//! the embedded connectors: full lifecycles, kill -9 crash safety, suspend/resume, cancel,
//! deletion, invalid specs, queueing and parallel projects.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gaffer::cli::demo::{PERSON, bare_repo_with, sample_app};
use gaffer::names::TaskRef;
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{DecidedBy, Phase, QuestionState};
use gaffer::store::{Tracker, Transport};

use crate::common::{commit_as, commit_to_bare, git};

/// The full lifecycle's phase transitions with the embedded connectors and the demo script:
/// two questions, one failing test run fed back to the agent, review, approval.
const LIFECYCLE: &[&str] = &[
    "Pending → Queued",
    "Queued → Preparing",
    "Preparing → Running",
    "Running → AwaitingAnswer",
    "AwaitingAnswer → Running",
    "Running → AwaitingAnswer",
    "AwaitingAnswer → Running",
    "Running → Deploying",
    "Deploying → Testing",
    "Testing → Running",
    "Running → Deploying",
    "Deploying → Testing",
    "Testing → InReview",
    "InReview → Promoted",
];

struct Lab {
    tmp: tempfile::TempDir,
    state: PathBuf,
    data: PathBuf,
    builders: PathBuf,
}

impl Lab {
    fn new(timeout: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let state = crate::common::demo_repos(tmp.path(), timeout);
        Lab {
            data: tmp.path().join("data"),
            builders: tmp.path().join("builders"),
            state,
            tmp,
        }
    }

    fn origin(&self) -> PathBuf {
        self.tmp.path().join("origins/web-api.git")
    }

    fn commit(&self, files: &[(&str, &str)], msg: &str) {
        commit_to_bare(&self.state, "main", files, msg);
    }

    fn add_task(&self, name: &str, extra: &str) {
        let path = format!("projects/demo/web-api/tasks/{name}/task.yaml");
        let body = format!("title: Task {name}\n{extra}");
        self.commit(&[(path.as_str(), body.as_str())], &format!("task {name}"));
    }

    fn snapshot(&self) -> Snapshot {
        let t = Transport::open(
            self.state.to_str().unwrap(),
            "main",
            &self.tmp.path().join("ro"),
            false,
        )
        .unwrap();
        let mut tracker = Tracker::new(None, None);
        tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
        tracker.snapshot().clone()
    }

    fn daemon(&self) -> Daemon {
        self.daemon_with(&[])
    }

    /// `gaffer reconcile` on this lab, with `extra` arguments, logging to daemon.log.
    fn daemon_with(&self, extra: &[&str]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .args([
                "reconcile",
                "--lab",
                "render-only",
                "--state",
                self.state.to_str().unwrap(),
            ])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--builders")
            .arg(&self.builders)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon(child)
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default()
    }

    /// The phase transitions committed for `task`, in order, from the state repo's history.
    fn transitions(&self, task: &str) -> Vec<String> {
        let prefix = format!("gaffer: demo/web-api/{task} ");
        git(&self.state, &["log", "--reverse", "--format=%s", "main"])
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(&prefix)?;
                let rest = rest.split(" (+").next()?;
                rest.contains(" → ").then(|| rest.to_string())
            })
            .collect()
    }

    /// Plays the person: answers q-001 of any task with its first option, approves tasks in
    /// review. Returns what it did, so it does each thing once.
    fn act(&self, snap: &Snapshot, done: &mut BTreeSet<String>) {
        for (t, e) in snap.tasks() {
            let q1 = gaffer::names::Qid::new("q-001").unwrap();
            if let Some(q) = e.questions.get(&q1)
                && q.state == QuestionState::Open
                && done.insert(format!("{t}/answer"))
            {
                let label = q.options[0].label.clone();
                let path = format!("projects/demo/web-api/tasks/{}/answers/q-001.yaml", t.task);
                let body = format!("choice: {label}\nby: {PERSON}\n");
                commit_as(
                    &self.state,
                    PERSON,
                    &[(path.as_str(), body.as_str())],
                    "answer",
                );
            }
            if e.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::InReview)
                && done.insert(format!("{t}/approve"))
            {
                let path = format!("projects/demo/web-api/tasks/{}/approvals/ok.yaml", t.task);
                let body = crate::common::approval_body(PERSON, e.status.as_deref());
                commit_as(
                    &self.state,
                    PERSON,
                    &[(path.as_str(), body.as_str())],
                    "approve",
                );
            }
        }
    }
}

/// A reconciler process, killed with SIGKILL when dropped.
struct Daemon(Child);

impl Daemon {
    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The status of `demo/web-api/<task>`, which must exist.
fn status(snap: &Snapshot, task: &str) -> gaffer::state::status::TaskStatus {
    let t = TaskRef::parse(&format!("demo/web-api/{task}")).unwrap();
    snap.task(&t)
        .and_then(|e| e.status.as_deref().cloned())
        .expect("task has a status")
}

fn phase(snap: &Snapshot, task: &str) -> Option<Phase> {
    let t = TaskRef::parse(&format!("demo/web-api/{task}")).unwrap();
    snap.task(&t)?.status.as_ref().map(|s| s.phase)
}

fn wait_until(lab: &Lab, secs: u64, what: &str, mut f: impl FnMut(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut done = BTreeSet::new();
    loop {
        let snap = lab.snapshot();
        if f(&snap) {
            return snap;
        }
        lab.act(&snap, &mut done);
        if Instant::now() > deadline {
            let mut report = String::new();
            for (t, e) in snap.tasks() {
                report.push_str(&format!("{t}: {:#?}\n", e.status));
                for q in e.questions.values() {
                    report.push_str(&format!(
                        "  question {:?} {:?} {:?}\n",
                        q.text, q.state, q.decision
                    ));
                }
                if let Some(p) = &e.progress {
                    for m in p.milestones.iter().rev().take(5) {
                        report.push_str(&format!("  milestone {} {}\n", m.seq, m.text));
                    }
                }
            }
            panic!(
                "timed out waiting for {what}\n{report}\ndaemon log:\n{}",
                lab.daemon_log()
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Everything that must hold after tasks went through the whole lifecycle.
fn assert_effects_once(lab: &Lab, tasks: &[&str]) {
    let snap = lab.snapshot();
    // Each phase transition committed once, in order.
    for t in tasks {
        assert_eq!(lab.transitions(t), LIFECYCLE, "transitions of {t}");
        let tr = TaskRef::parse(&format!("demo/web-api/{t}")).unwrap();
        let e = snap.task(&tr).unwrap();
        let q1 = &e.questions[&gaffer::names::Qid::new("q-001").unwrap()];
        let d = q1.decision.as_ref().expect("q-001 decided");
        assert_eq!(
            d.decided_by,
            DecidedBy::Human,
            "{t}: the person's answer was not lost"
        );
        assert_eq!(d.by.as_deref(), Some(PERSON));
        let q2 = &e.questions[&gaffer::names::Qid::new("q-002").unwrap()];
        assert_eq!(
            q2.decision.as_ref().unwrap().decided_by,
            DecidedBy::TimeoutDefault
        );
        // Every milestone notified exactly once, in order.
        let milestones = &e.progress.as_ref().unwrap().milestones;
        let log = gaffer::chat::LogNotifier::read(&lab.data.join("notifications.log"));
        let mine: Vec<_> = log
            .iter()
            .filter(|(_, task, _)| task == &tr.to_string())
            .collect();
        let ids: Vec<String> = mine.iter().map(|(id, _, _)| id.clone()).collect();
        let want: Vec<String> = (1..=milestones.len())
            .map(|i| format!("{tr}#{i}"))
            .collect();
        assert_eq!(ids, want, "{t}: notifications");
        for ((_, _, text), m) in mine.iter().zip(milestones) {
            assert_eq!(text, &m.text);
        }
        // The agent got each prompt once.
        let session: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                lab.data
                    .join(format!("scripted/scripted-demo-web-api-{t}.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            session["prompts"],
            serde_json::json!(["task", "feedback-tests-1"]),
            "{t}: prompts"
        );
    }
    // One change per task, each merged once.
    let forge: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.data.join("forge/changes.json")).unwrap(),
    )
    .unwrap();
    let changes = forge["changes"].as_array().unwrap();
    assert_eq!(changes.len(), tasks.len(), "{forge:#}");
    assert!(changes.iter().all(|c| c["state"] == "merged"));
    let merges = git(&lab.origin(), &["rev-list", "--merges", "main"]);
    assert_eq!(
        merges.lines().count(),
        tasks.len(),
        "one merge commit per task"
    );
}

#[test]
fn a_task_goes_from_commit_to_promoted() {
    let lab = Lab::new("1s");
    lab.add_task("jwt", "priority: high\n");
    let _d = lab.daemon();
    wait_until(&lab, 60, "Promoted", |s| {
        phase(s, "jwt") == Some(Phase::Promoted)
    });
    assert_effects_once(&lab, &["jwt"]);
    // The workspace is where DESIGN.md says, on the task branch, with the agent's work.
    let wt = lab.builders.join("demo-web-api/repos/web-api");
    assert_eq!(
        git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "gaffer/jwt"
    );
    assert!(wt.join("app/fixed-jwt.txt").is_file());
    // The lab record holds the render.
    let snap = lab.snapshot();
    let labst = snap.projects.values().next().unwrap().lab.clone().unwrap();
    assert_eq!(labst.namespace, "demo-web-api-lab");
    assert_eq!(labst.urls, ["https://web-api.builder.lab.example.com"]);
    assert!(
        labst
            .inventory
            .iter()
            .any(|i| i.kind == "Deployment" && i.namespace == "demo-web-api-lab")
    );
    assert_eq!(labst.tests.as_ref().unwrap().passed, 3);
}

#[test]
fn kill_9_at_random_points_loses_nothing_and_repeats_nothing() {
    let seed = std::env::var("GAFFER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash test seed {seed} (set GAFFER_CRASH_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let lab = Lab::new("1s");
    let mut tasks: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut done = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 50 {
        if tasks
            .iter()
            .all(|t| phase(&lab.snapshot(), t) == Some(Phase::Promoted))
        {
            let name = format!("t{}", tasks.len() + 1);
            lab.add_task(&name, "");
            tasks.push(name);
        }
        let d = lab.daemon();
        let life = Instant::now() + Duration::from_millis(rng.u64(10..300));
        while Instant::now() < life {
            lab.act(&lab.snapshot(), &mut done);
            std::thread::sleep(Duration::from_millis(10));
        }
        d.kill9();
        kills += 1;
        assert!(
            Instant::now() < deadline,
            "too slow; daemon log:\n{}",
            lab.daemon_log()
        );
    }
    println!(
        "kill points exercised: {kills} across {} task lifecycles",
        tasks.len()
    );
    // Let the last lifecycles finish without interference.
    let _d = lab.daemon();
    wait_until(&lab, 120, "every task Promoted", |s| {
        tasks.iter().all(|t| phase(s, t) == Some(Phase::Promoted))
    });
    let names: Vec<&str> = tasks.iter().map(String::as_str).collect();
    assert_effects_once(&lab, &names);
}

#[test]
fn second_task_of_a_project_waits_in_queued_and_projects_run_in_parallel() {
    let lab = Lab::new("1h");
    // A second project building its own copy of the app.
    let origin2 = lab.tmp.path().join("origins/other.git");
    bare_repo_with(&origin2, &sample_app(), "other").unwrap();
    let project2 = format!(
        "repos:\n  - {{name: web-api, url: {}, base: main}}\nagent: {{runtime: scripted, script: web-api/.gaffer/agent-script.yaml}}\n",
        origin2.display()
    );
    lab.commit(
        &[
            ("projects/demo/other/project.yaml", project2.as_str()),
            (
                "projects/demo/other/tasks/x/task.yaml",
                "title: other project's task\n",
            ),
            (
                "projects/demo/web-api/tasks/first/task.yaml",
                "title: first\npriority: high\n",
            ),
            (
                "projects/demo/web-api/tasks/second/task.yaml",
                "title: second\npriority: low\n",
            ),
        ],
        "three tasks",
    );
    let _d = lab.daemon();
    let other = TaskRef::parse("demo/other/x").unwrap();
    let snap = wait_until(
        &lab,
        60,
        "both projects waiting on their first question",
        |s| {
            phase(s, "first") == Some(Phase::AwaitingAnswer)
                && s.task(&other)
                    .and_then(|e| e.status.as_ref())
                    .map(|s| s.phase)
                    == Some(Phase::AwaitingAnswer)
        },
    );
    let second = status(&snap, "second");
    assert_eq!(second.phase, Phase::Queued);
    assert_eq!(second.reason.as_deref(), Some("ProjectBusy"));
    // Cancelling the first frees the slot.
    lab.commit(
        &[(
            "projects/demo/web-api/tasks/first/task.yaml",
            "title: first\npriority: high\ncancel: true\n",
        )],
        "cancel first",
    );
    wait_until(&lab, 30, "second starts", |s| {
        phase(s, "first") == Some(Phase::Cancelled)
            && phase(s, "second").is_some_and(|p| p.is_active())
    });
}

#[test]
fn suspend_resume_cancel_and_delete() {
    let lab = Lab::new("1h");
    lab.add_task("s", "");
    let _d = lab.daemon();
    wait_until(&lab, 30, "AwaitingAnswer", |s| {
        phase(s, "s") == Some(Phase::AwaitingAnswer)
    });
    lab.add_task("s", "suspend: true\n");
    wait_until(&lab, 30, "Suspended", |s| {
        phase(s, "s") == Some(Phase::Suspended)
    });
    lab.add_task("s", "suspend: false\n");
    // Back to work: the agent is still blocked on its question.
    wait_until(&lab, 30, "resumed", |s| {
        phase(s, "s") == Some(Phase::AwaitingAnswer)
    });
    lab.add_task("s", "cancel: true\n");
    let snap = wait_until(&lab, 30, "Cancelled", |s| {
        phase(s, "s") == Some(Phase::Cancelled)
    });
    let st = status(&snap, "s");
    assert_eq!(st.reason.as_deref(), Some("Cancelled"));
    let wt = lab.builders.join("demo-web-api/repos/web-api");
    assert!(wt.is_dir(), "worktree kept");
    assert!(
        git(&wt, &["branch", "--list", "gaffer/s"]).contains("gaffer/s"),
        "branch kept"
    );
    let expected = [
        "Pending → Queued",
        "Queued → Preparing",
        "Preparing → Running",
        "Running → AwaitingAnswer",
        "AwaitingAnswer → Suspended",
        "Suspended → Queued",
        "Queued → Preparing",
        "Preparing → Running",
        "Running → AwaitingAnswer",
        "AwaitingAnswer → Cancelled",
    ];
    assert_eq!(lab.transitions("s"), expected);

    // Deleting a task cancels it too.
    lab.add_task("d", "");
    wait_until(&lab, 30, "d started", |s| {
        phase(s, "d").is_some_and(|p| p.is_active())
    });
    crate::common::change_bare(
        &lab.state,
        "main",
        &[("projects/demo/web-api/tasks/d/task.yaml".into(), None)],
        "delete d",
    );
    let snap = wait_until(&lab, 30, "d cancelled", |s| {
        phase(s, "d") == Some(Phase::Cancelled)
    });
    let st = status(&snap, "d");
    assert_eq!(st.reason.as_deref(), Some("TaskDeleted"));
}

#[test]
fn invalid_task_yaml_gets_a_located_error_and_nothing_else() {
    let lab = Lab::new("1h");
    lab.commit(
        &[(
            "projects/demo/web-api/tasks/bad/task.yaml",
            "title: ok\npriority: asap\n",
        )],
        "bad task",
    );
    let _d = lab.daemon();
    let snap = wait_until(&lab, 30, "a status for the bad task", |s| {
        s.task(&TaskRef::parse("demo/web-api/bad").unwrap())
            .is_some_and(|e| e.status.is_some())
    });
    let st = status(&snap, "bad");
    assert_eq!(st.phase, Phase::Pending);
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "SpecValid")
        .unwrap();
    assert_eq!(
        cond.message,
        "projects/demo/web-api/tasks/bad/task.yaml:2:11: unknown variant `asap`, expected one of low, medium, high, urgent"
    );
    // Nothing else happened: no workspace, no agent session.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!lab.builders.join("demo-web-api").exists());
    assert!(!lab.data.join("scripted").exists());
    // Fixing it starts the task.
    lab.commit(
        &[(
            "projects/demo/web-api/tasks/bad/task.yaml",
            "title: ok\npriority: high\n",
        )],
        "fix",
    );
    wait_until(&lab, 30, "the fixed task runs", |s| {
        phase(s, "bad").is_some_and(|p| p.is_active())
    });
}

#[test]
fn gaffer_demo_ends_promoted_and_tells_the_story() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "person     committed task demo/web-api/jwt-auth",
        "gaffer     ❓ q-001: Should I use RS256 or HS256 for JWT signing?",
        "gaffer     ✅ q-001 answered RS256 (Recommended) by you@example.com",
        "gaffer     ⏰ q-002 defaulted to 15 minutes (Recommended) at the deadline",
        "gaffer     ❌ Integration tests: 1 of 3 failing (test_token_expiry)",
        "gaffer     ✅ Integration tests: 3/3 passing",
        "gaffer     🔗 Lab: https://web-api.builder.lab.example.com",
        "gaffer     ✅ web-api: change #1 merged",
        "gaffer     InReview → Promoted: approved by you@example.com",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The history, as a person reads it (hashes and the timestamps left out).
    let story = git(
        &dir.join("state.git"),
        &["log", "--reverse", "--format=%an: %s", "main"],
    );
    insta::assert_snapshot!(story);
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn daemon_serves_health_and_metrics() {
    let lab = Lab::new("1h");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _d = lab.daemon_with(&["--listen", &addr.to_string()]);
    lab.add_task("m", "");
    wait_until(&lab, 30, "the task waits on its question", |s| {
        phase(s, "m") == Some(Phase::AwaitingAnswer)
    });
    let health = http_get(addr, "/healthz").expect("healthz answers");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let metrics = http_get(addr, "/metrics").unwrap();
    let reconciles: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gaffer_reconciles_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(reconciles >= 4, "{metrics}");
    let observed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gaffer_wake_to_commit_seconds_count "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        observed >= 1,
        "the task commit's wake→commit latency was observed: {metrics}"
    );
}

#[test]
fn failing_tests_fail_the_task_and_retry_goes_back_through_the_queue_with_new_feedback() {
    let lab = Lab::new("1s");
    let project = format!(
        "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
         agent: {{runtime: scripted, script: web-api/.gaffer/agent-script.yaml}}\n\
         lab: {{overlay: web-api/deploy, test: \"false\", test_without_deploy: true}}\n",
        lab.origin().display()
    );
    lab.commit(
        &[("projects/demo/web-api/project.yaml", project.as_str())],
        "tests that always fail",
    );
    lab.add_task("f", "");
    let _d = lab.daemon();
    let snap = wait_until(&lab, 60, "Failed", |s| phase(s, "f") == Some(Phase::Failed));
    let st = status(&snap, "f");
    assert_eq!(st.reason.as_deref(), Some("TestsFailing"));
    assert_eq!(
        st.agent.as_ref().unwrap().prompts_sent,
        ["task", "feedback-tests-1", "feedback-tests-2"],
        "two rounds of feedback (max_test_retries), then Failed"
    );
    lab.add_task("f", "retry: 1\n");
    let snap = wait_until(&lab, 60, "Failed again after the retry", |s| {
        let st = s
            .task(&TaskRef::parse("demo/web-api/f").unwrap())
            .and_then(|e| e.status.clone());
        st.is_some_and(|st| st.phase == Phase::Failed && st.observed_retry == 1)
    });
    let st = status(&snap, "f");
    assert_eq!(
        st.agent.as_ref().unwrap().prompts_sent,
        [
            "task",
            "feedback-tests-1",
            "feedback-tests-2",
            "feedback-tests-3",
            "feedback-tests-4"
        ],
        "the retry's feedback gets new ids, so the agent really receives it"
    );
    let t = lab.transitions("f");
    let retry_at = t
        .iter()
        .position(|x| x == "Failed → Queued")
        .expect("retry goes through the queue");
    assert_eq!(
        &t[retry_at..retry_at + 3],
        [
            "Failed → Queued",
            "Queued → Preparing",
            "Preparing → Testing"
        ]
    );
}

/// A Taskfile written the way codev's `builder:init` makes a builder's workspace: a bare
/// clone per repo under `.mirrors/`, a git worktree per repo under
/// `.builders/<builder>/repos/`. Run by the real go-task; each run is logged to `init.log`.
const BUILDER_INIT_TASKFILE: &str = r#"version: '3'

tasks:
  builder:init:
    desc: Make .builders/<BUILDER_NAME>/repos/<repo> for each of REPOS
    requires:
      vars: [BUILDER_NAME, REPOS, REMOTES]
    cmds:
      - for: {var: REPOS, split: ','}
        cmd: |
          set -e
          echo "{{.BUILDER_NAME}} {{.ITEM}}" >> init.log
          mkdir -p .mirrors .builders/{{.BUILDER_NAME}}/repos
          if [ ! -d .mirrors/{{.ITEM}}.git ]; then
            git clone --quiet --bare {{.REMOTES}}/{{.ITEM}}.git .mirrors/{{.ITEM}}.git
          fi
          if [ ! -e .builders/{{.BUILDER_NAME}}/repos/{{.ITEM}}/.git ]; then
            git -C .mirrors/{{.ITEM}}.git worktree add --quiet --detach \
              "$PWD/.builders/{{.BUILDER_NAME}}/repos/{{.ITEM}}" main
          fi
"#;

/// A lab whose project makes its workspace with the real go-task running `taskfile` (as
/// `builder:init`, or `task` when given); gaffer's builders root is the `.builders/` beside
/// the Taskfile. Returns the lab and the Taskfile's dir.
fn lab_with_workspace_command(taskfile: &str, task: &str) -> (Lab, PathBuf) {
    // Questions default after a second: the test is about the workspace.
    let mut lab = Lab::new("1s");
    let ws = lab.tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("Taskfile.yml"), taskfile).unwrap();
    lab.builders = ws.join(".builders");
    let run = format!(
        "{} --dir {} {task} BUILDER_NAME={{{{builder}}}} REPOS={{{{repos}}}} REMOTES={}",
        crate::common::go_task().display(),
        ws.display(),
        lab.origin().parent().unwrap().display()
    );
    let project = format!(
        "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
         agent: {{runtime: scripted, script: web-api/.gaffer/agent-script.yaml}}\n\
         lab: {{overlay: web-api/deploy, test: sh tests/run-tests.sh, test_without_deploy: true}}\n\
         forge: {{kind: local, merge_method: merge}}\n\
         workspace:\n  init: command\n  run: {}\n",
        serde_json::Value::String(lab.origin().display().to_string()),
        serde_json::Value::String(run),
    );
    lab.commit(
        &[("projects/demo/web-api/project.yaml", project.as_str())],
        "workspace by command",
    );
    (lab, ws)
}

#[test]
fn the_users_own_taskfile_builder_init_makes_the_workspace_and_gaffer_adopts_it() {
    let (lab, ws) = lab_with_workspace_command(BUILDER_INIT_TASKFILE, "builder:init");
    lab.add_task("jwt", "");
    let _d = lab.daemon();
    wait_until(&lab, 120, "promoted", |s| {
        phase(s, "jwt") == Some(Phase::Promoted)
    });

    // The Taskfile made the worktree where gaffer looks; gaffer put it on the task branch
    // and made no mirror of its own.
    let worktree = ws.join(".builders/demo-web-api/repos/web-api");
    let mirror = ws.join(".mirrors/web-api.git").canonicalize().unwrap();
    assert!(
        !ws.join(".builders/.mirrors").exists(),
        "gaffer made no mirror of its own"
    );
    assert_eq!(
        git(
            &worktree,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"]
        ),
        mirror.display().to_string()
    );
    assert_eq!(git(&worktree, &["branch", "--show-current"]), "gaffer/jwt");
    // The work reached the project's repository, pushed from the user's mirror.
    let work = git(&mirror, &["rev-parse", "refs/heads/gaffer/jwt"]);
    let merged = Command::new("git")
        .current_dir(lab.origin())
        .args(["merge-base", "--is-ancestor", &work, "main"])
        .status()
        .unwrap();
    assert!(merged.success(), "gaffer/jwt {work} is merged into main");
    // A second task of the project does not run the command again: the repos did not change.
    lab.add_task("second", "");
    wait_until(&lab, 120, "second promoted", |s| {
        phase(s, "second") == Some(Phase::Promoted)
    });
    assert_eq!(
        std::fs::read_to_string(ws.join("init.log")).unwrap(),
        "demo-web-api web-api\n"
    );
    assert_eq!(
        git(&worktree, &["branch", "--show-current"]),
        "gaffer/second"
    );
}

/// jwt's `WorkspaceReady` condition, once it has one.
fn workspace_ready(snap: &Snapshot) -> Option<gaffer::state::status::Condition> {
    let t = TaskRef::parse("demo/web-api/jwt").unwrap();
    snap.task(&t)?
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "WorkspaceReady")
        .cloned()
}

#[test]
fn a_workspace_command_that_fails_or_makes_the_wrong_thing_stops_the_task_with_why() {
    // Fails: its last output lines reach the task's condition; nothing else happens.
    let failing = "version: '3'\ntasks:\n  builder:init:\n    cmds:\n      - echo making {{.BUILDER_NAME}}\n      - echo 'no credentials for the mirror' >&2\n      - exit 3\n";
    let (lab, ws) = lab_with_workspace_command(failing, "builder:init");
    lab.add_task("jwt", "");
    let _d = lab.daemon();
    let snap = wait_until(&lab, 60, "the condition", |s| workspace_ready(s).is_some());
    let st = status(&snap, "jwt");
    let c = workspace_ready(&snap).unwrap();
    assert_eq!(c.reason, "InitFailed");
    assert!(c.message.contains("making demo-web-api"), "{}", c.message);
    assert!(
        c.message.contains("no credentials for the mirror"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("exited with exit status: 201"),
        "go-task's exit for a failed task: {}",
        c.message
    );
    assert!(
        c.message
            .contains("Failed to run task \"builder:init\": exit status 3"),
        "{}",
        c.message
    );
    assert_eq!(st.phase, Phase::Preparing);
    assert!(st.agent.is_none(), "no builder was started");
    assert!(!ws.join(".builders/.mirrors").exists());

    // Makes a plain directory where a worktree should be: named in the condition.
    let wrong = "version: '3'\ntasks:\n  builder:init:\n    cmds:\n      - mkdir -p .builders/{{.BUILDER_NAME}}/repos/web-api/.git\n";
    let (lab, _ws) = lab_with_workspace_command(wrong, "builder:init");
    lab.add_task("jwt", "");
    let _d = lab.daemon();
    let snap = wait_until(&lab, 60, "the condition", |s| workspace_ready(s).is_some());
    let st = status(&snap, "jwt");
    let c = workspace_ready(&snap).unwrap();
    assert!(
        c.message.contains("did not make a usable repos/web-api"),
        "{}",
        c.message
    );
    assert!(st.agent.is_none());
}
