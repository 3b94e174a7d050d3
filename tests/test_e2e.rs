//! The user's whole workflow as one scenario: a Slack form → `task.yaml` → the real OpenCode
//! (scripted model) in tmux working in two repos → a question answered by a button 30
//! (injected-clock) minutes later → deploy to the fake cluster with rollout → lab tests → a
//! PR per repo → an approving GitHub review by signed webhook → merged → `Promoted`.
//! Everything that can run here is real (git, tmux, OpenCode, `kubectl kustomize`, the
//! `gaffer reconcile` and `gaffer slack` processes); Slack, Kubernetes and GitHub are
//! in-process fakes speaking their real protocols.
//!
//! `GAFFER_DEMO_SLOW=1` (what `task demo:full` sets) pauses between the steps, prints how to
//! watch the builder and shows the Slack thread as text.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gaffer::cli::demo::{PERSON, bare_repo_with, sample_app};
use gaffer::names::TaskRef;
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{DecidedBy, Phase, QuestionState, TaskStatus};
use serde_json::json;

use crate::common::github::FakeGitHub;
use crate::common::kube::FakeKube;
use crate::common::llm::{Llm, Step, todos};
use crate::common::opencode::World;
use crate::common::slack::{APP_TOKEN, BOT_TOKEN, FakeSlack, Message};
use crate::common::{Proc, free_port, git, snapshot_of};

const ALICE: &str = "U0ALICE";
const TITLE: &str = "Implement JWT authentication";
const TASK: &str = "ai-dev/proj-api-service/implement-jwt-authentication";
const CHANNEL: &str = "ai-dev-proj-api-service";
const NS: &str = "ai-dev-proj-api-service-lab";
const SECRET: &[u8] = b"e2e-webhook-secret";
const SIGNING: &str = "Should I use RS256 or HS256 for JWT signing?";

fn slow() -> bool {
    std::env::var_os("GAFFER_DEMO_SLOW").is_some()
}

/// In the slow demo: say what happens, show the thread, pause.
fn step(w: &E2e, what: &str) {
    if slow() {
        println!("\n=== {what}");
        println!("{}", w.thread_text());
        std::thread::sleep(Duration::from_secs(3));
    }
}

struct E2e {
    tmp: tempfile::TempDir,
    state: PathBuf,
    llm: Llm,
    world: World,
    slack: FakeSlack,
    kube: FakeKube,
    gh: FakeGitHub,
    port: u16,
    task: TaskRef,
}

/// The builder's conversation: plan, edit both repos, ask, go on at once, finish.
fn steps(task: &str) -> Vec<Step> {
    vec![
        Step {
            text: Some("I will plan the JWT work first.".into()),
            tools: vec![(
                "todowrite".into(),
                todos(&[
                    ("Read the API code", "completed"),
                    ("Add token issuing", "in_progress"),
                    ("Configure the lab", "pending"),
                ]),
            )],
            ..Step::default()
        },
        Step::tool(
            "write",
            json!({"filePath": "repos/domain-apis/app/auth.py", "content": "def issue(user):\n    return {'sub': user}\n"}),
        ),
        Step::tool(
            "question",
            json!({"questions": [{"question": SIGNING, "header": "JWT signing", "multiple": false,
                "options": [
                    {"label": "RS256 (Recommended)", "description": "Asymmetric keys"},
                    {"label": "HS256", "description": "One shared secret"}]}]}),
        ),
        Step::tool(
            "write",
            json!({"filePath": "repos/domain-apis/app/signing.txt", "content": "RS256\n"}),
        ),
        Step::tool(
            "write",
            json!({"filePath": "repos/k8s-lab/overlays/builder/main.py", "content": "print('JWT ready')\n"}),
        ),
        Step::tool(
            "write",
            json!({"filePath": format!("repos/domain-apis/app/fixed-{task}.txt"), "content": "tokens checked\n"}),
        ),
        Step::tool(
            "todowrite",
            todos(&[
                ("Read the API code", "completed"),
                ("Add token issuing", "completed"),
                ("Configure the lab", "completed"),
            ]),
        ),
        Step::text("JWT auth with RS256 is in place.\nDONE: JWT authentication implemented"),
    ]
}

impl E2e {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let llm = Llm::start();
        let world = World::new(&llm);
        let task = TaskRef::parse(TASK).unwrap();
        llm.script(TITLE, steps(task.task.as_str()));
        // domain-apis: the demo app (its tests pass once app/fixed-<task>.txt exists);
        // k8s-lab: the overlay the lab deploys.
        let apis = tmp.path().join("origins/domain-apis.git");
        bare_repo_with(&apis, &sample_app(), "domain-apis").unwrap();
        let lab_files: Vec<(String, Option<Vec<u8>>)> = sample_app()
            .into_iter()
            .filter_map(|(p, c)| {
                p.strip_prefix("app/")
                    .map(|rest| (format!("overlays/builder/{rest}"), c))
            })
            .collect();
        let k8s = tmp.path().join("origins/k8s-lab.git");
        bare_repo_with(&k8s, &lab_files, "k8s-lab").unwrap();
        let settings = format!(
            "domain: lab.ctoaas.co\n\
             business_hours: {{timezone: Europe/London, days: [mon, tue, wed, thu, fri], start: \"09:00\", end: \"17:00\"}}\n\
             questions: {{timeout: 2h, on_timeout: recommended, continue: immediately}}\n\
             authors: {{answers: [{PERSON}], slack_users: [{ALICE}], slack_names: {{{ALICE}: \"Alice Example <alice@example.com>\"}}, reviewers: [alice]}}\n"
        );
        let project = format!(
            "repos:\n  - {{name: domain-apis, url: {}, base: main, github: example/domain-apis}}\n\
             \x20 - {{name: k8s-lab, url: {}, base: main, github: example/k8s-lab}}\n\
             agent:\n  runtime: opencode\n  model: scripted/m\n  permissions:\n    - {{permission: \"*\", action: allow}}\n\
             lab: {{overlay: k8s-lab/overlays/builder, test: sh tests/run-tests.sh}}\n\
             forge: {{kind: github, merge_method: squash}}\n",
            json!(apis.display().to_string()),
            json!(k8s.display().to_string())
        );
        let state = tmp.path().join("state.git");
        bare_repo_with(
            &state,
            &[
                ("gaffer.yaml".into(), Some(settings.into_bytes())),
                (
                    "projects/ai-dev/proj-api-service/project.yaml".into(),
                    Some(project.into_bytes()),
                ),
            ],
            "state",
        )
        .unwrap();
        let gh = FakeGitHub::start();
        gh.add_repo("example/domain-apis", &apis);
        gh.add_repo("example/k8s-lab", &k8s);
        let kube = FakeKube::start();
        kube.write_kubeconfig(&tmp.path().join("kubeconfig"));
        std::fs::write(tmp.path().join("webhook.secret"), SECRET).unwrap();
        // Wednesday 25 November 2026, 10:00 in London.
        std::fs::write(tmp.path().join("clock"), "2026-11-25T10:00:00Z").unwrap();
        let port = free_port();
        E2e {
            tmp,
            state,
            llm,
            world,
            slack: FakeSlack::start(),
            kube,
            gh,
            port,
            task,
        }
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join(name))
            .unwrap()
    }

    fn builders(&self) -> PathBuf {
        self.tmp.path().join(".builders")
    }

    fn reconciler(&self) -> Proc {
        let log = self.log("daemon.log");
        Proc(
            crate::common::gaffer(self.tmp.path())
                .args(["reconcile", "--lab", "cluster", "--lab-rollout-secs", "20"])
                .args(["--forge-poll-secs", "600"])
                .args(["--state", self.state.to_str().unwrap()])
                .arg("--data-dir")
                .arg(self.tmp.path().join("data"))
                .arg("--builders")
                .arg(self.builders())
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .arg("--webhook-secret-file")
                .arg(self.tmp.path().join("webhook.secret"))
                .arg("--clock-file")
                .arg(self.tmp.path().join("clock"))
                .args(self.world.daemon_args())
                .env("KUBECONFIG", self.tmp.path().join("kubeconfig"))
                .env("GITHUB_TOKEN", crate::common::github::TOKEN)
                .env("GITHUB_API_URL", self.gh.url())
                .env("RUST_LOG", "info,gaffer::hop=debug")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn bot(&self) -> Proc {
        let log = self.log("bot.log");
        Proc(
            crate::common::gaffer(self.tmp.path())
                .args(["slack", "--state", self.state.to_str().unwrap()])
                .arg("--data-dir")
                .arg(self.tmp.path().join("bot"))
                .env("SLACK_BOT_TOKEN", BOT_TOKEN)
                .env("SLACK_APP_TOKEN", APP_TOKEN)
                .env("GAFFER_SLACK_API_URL", self.slack.api_url())
                .env("RUST_LOG", "info,gaffer::hop=debug")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    /// Alice's `/opencode start` form, submitted; when it was (the task is committed before
    /// the ack).
    fn start_task(&self) -> Instant {
        self.slack
            .slash(ALICE, "C0GENERAL", "start ai-dev/proj-api-service");
        let (view_id, _) = self.slack.views().pop().expect("the form opened");
        let submitted = Instant::now();
        let ack = self.slack.submit(
            ALICE,
            &view_id,
            &[
                ("category", "selected:ai-dev"),
                ("project", "selected:ai-dev/proj-api-service"),
                ("title", TITLE),
                (
                    "description",
                    "Add JWT auth to the API: issue tokens, check them on every call.",
                ),
                ("priority", "selected:high"),
            ],
        );
        assert!(ack.is_null(), "{ack}");
        submitted
    }

    fn set_clock(&self, at: &str) {
        std::fs::write(self.tmp.path().join("clock"), at).unwrap();
    }

    fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.state, &self.tmp.path().join("ro"))
    }

    fn status(&self) -> Option<TaskStatus> {
        self.snapshot()
            .task(&self.task)
            .and_then(|e| e.status.as_deref().cloned())
    }

    fn logs(&self) -> String {
        let r = |n: &str| std::fs::read_to_string(self.tmp.path().join(n)).unwrap_or_default();
        format!(
            "--- daemon.log\n{}\n--- bot.log\n{}\n--- LLM\n{:#?}",
            r("daemon.log"),
            r("bot.log"),
            self.llm.log()
        )
    }

    fn wait<T>(&self, secs: u64, what: &str, mut f: impl FnMut(&E2e) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\nstatus: {:#?}\nthread:\n{}\n{}",
                    self.status(),
                    self.thread_text(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn message(&self, key: &str) -> Option<Message> {
        self.slack.messages().into_iter().find(|m| m.key() == key)
    }

    fn channel(&self) -> Option<String> {
        self.slack
            .channels()
            .into_iter()
            .find(|(_, n)| n == CHANNEL)
            .map(|(id, _)| id)
    }

    /// The task's Slack thread as text.
    fn thread_text(&self) -> String {
        let msgs = self.slack.messages();
        let Some(parent) = msgs
            .iter()
            .find(|m| m.key() == format!("gaffer:parent:{}", self.task))
        else {
            return "(no thread yet)".into();
        };
        let mut out = format!("#{CHANNEL} · {}\n", parent.text);
        for m in msgs
            .iter()
            .filter(|m| m.thread_ts.as_deref() == Some(parent.ts.as_str()))
        {
            out.push_str(&format!("  └ {}\n", m.text.replace('\n', " / ")));
        }
        out
    }

    /// Sends a signed `pull_request_review` webhook; `None` when nothing listens.
    fn webhook_review(&self, repo: &str, number: u64) -> Option<String> {
        use std::io::{Read, Write};
        let body = format!(
            r#"{{"action":"submitted","review":{{"state":"approved","user":{{"login":"alice"}}}},"pull_request":{{"number":{number}}},"repository":{{"full_name":"{repo}"}}}}"#
        );
        let sig = gaffer::server::sign(SECRET, body.as_bytes());
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            s,
            "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request_review\r\n\
             X-Hub-Signature-256: {sig}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Some(out)
    }
}

fn has_file(repo: &Path, rev: &str, file: &str) -> bool {
    std::process::Command::new("git")
        .current_dir(repo)
        .args(["cat-file", "-e", &format!("{rev}:{file}")])
        .status()
        .unwrap()
        .success()
}

/// Every external effect of the scenario happened once: each model step, each Slack
/// message (milestones in order), each changed apply, one PR per repo, one merge each.
fn assert_effects_once(w: &E2e) {
    let counts = crate::test_opencode::step_counts(&w.llm, TITLE);
    assert!(
        counts.values().all(|&n| n == 1),
        "each model step once: {counts:?}"
    );
    let msgs = w.slack.messages();
    let mut keys: Vec<String> = msgs
        .iter()
        .map(|m| m.key())
        .filter(|k| !k.is_empty())
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no Slack message posted twice: {msgs:#?}");
    let seqs: Vec<u32> = msgs
        .iter()
        .filter_map(|m| {
            m.key()
                .strip_prefix("gaffer:m:")
                .map(|s| s.parse().unwrap())
        })
        .collect();
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "milestones in order: {seqs:?}"
    );
    let applied: Vec<String> = w
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.changed)
        .map(|r| r.path)
        .collect();
    let mut uniq = applied.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        applied.len(),
        "each object applied (changed) once: {applied:#?}"
    );
    let gh = w.gh.requests();
    let count =
        |f: &dyn Fn(&crate::common::github::Request) -> bool| gh.iter().filter(|r| f(r)).count();
    assert_eq!(
        count(&|r| r.method == "POST" && r.path.ends_with("/pulls")),
        2
    );
    assert_eq!(
        count(&|r| r.method == "PUT" && r.path.ends_with("/merge") && r.status == 200),
        2
    );
}

/// The story the state repository's log tells: every phase change, decision and person's
/// or bot's action, in order (commit batching and the bot's own bookkeeping vary with
/// timing, so those are left out).
fn story(state: &Path) -> String {
    let log = git(
        state,
        &["log", "--reverse", "--format=%an%x00%B%x01", "main"],
    );
    let mut out = Vec::new();
    for commit in log.split('\u{1}') {
        let Some((who, message)) = commit.trim_start_matches('\n').split_once('\0') else {
            continue;
        };
        let mut lines = message.lines();
        let subject = lines.next().unwrap_or("");
        // One summary, or several listed as "- ..." under a "(+N more)" subject.
        let listed: Vec<&str> = lines.filter_map(|l| l.strip_prefix("- ")).collect();
        let parts: Vec<&str> = if listed.is_empty() {
            vec![subject.strip_prefix("gaffer: ").unwrap_or(subject)]
        } else {
            listed
        };
        for part in parts {
            let bookkeeping = part.contains("Slack thread posted through");
            if !bookkeeping && (who != "gaffer" || part.contains(" → ")) {
                out.push(format!("{who}: {part}"));
            }
        }
    }
    out.join("\n")
}

#[test]
fn from_a_slack_form_to_a_promoted_pr_with_the_real_opencode() {
    let w = E2e::new();
    let _reconciler = w.reconciler();
    let _bot = w.bot();
    if slow() {
        println!(
            "\nWatch the builder: tmux -S {} attach -t gaffer-ai-dev-proj-api-service\n",
            w.world.socket.display()
        );
    }

    // 1. /opencode start → the form → task.yaml, attributed to the Slack user.
    let submitted = w.start_task();
    let author = git(
        &w.state,
        &[
            "log",
            "-1",
            "--format=%an <%ae>",
            "main",
            "--",
            "projects/ai-dev/proj-api-service/tasks/implement-jwt-authentication/task.yaml",
        ],
    );
    assert_eq!(author, "Alice Example <alice@example.com>");
    step(&w, "task.yaml committed from the Slack form");

    // 2. The workspace, OpenCode in tmux, the thread.
    w.wait(120, "the builder's first model request", |w| {
        (!w.llm.log_of(TITLE).is_empty()).then_some(())
    });
    let session_started = submitted.elapsed();
    for repo in ["domain-apis", "k8s-lab"] {
        let wt = w
            .builders()
            .join(format!("ai-dev-proj-api-service/repos/{repo}"));
        assert_eq!(
            git(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
            "gaffer/implement-jwt-authentication"
        );
    }
    let windows = w.world.windows("gaffer-ai-dev-proj-api-service");
    assert!(windows.contains(&"server".to_string()), "{windows:?}");
    step(
        &w,
        "OpenCode started in tmux session gaffer-ai-dev-proj-api-service",
    );

    // 4. The question: buttons and the deadline (2 business hours, Europe/London); the
    // builder goes on at once.
    let q = w.wait(120, "q-001 in the thread", |w| w.message("gaffer:q:q-001"));
    assert!(q.thread_ts.is_some() && q.broadcast);
    let text = q.all_text();
    assert!(text.contains(SIGNING), "{text}");
    assert!(text.contains("Deadline Wed 25 Nov 12:00 GMT"), "{text}");
    assert!(q.blocks.to_string().contains("RS256 (Recommended)"));
    w.wait(120, "the builder going on before any answer", |w| {
        w.llm
            .log_of(TITLE)
            .iter()
            .any(|l| l.step >= 4)
            .then_some(())
    });
    step(&w, "the builder asked and went on with RS256 provisionally");

    // 5. Thirty minutes later Alice clicks RS256.
    w.set_clock("2026-11-25T10:30:00Z");
    let channel = w.channel().unwrap();
    let clicked = Instant::now();
    w.slack
        .click(ALICE, &channel, &q.ts, &format!("answer:{TASK}:q-001:0"));
    let snap = w.wait(60, "q-001 confirmed", |w| {
        let s = w.snapshot();
        let q = s
            .task(&w.task)?
            .questions
            .get(&gaffer::names::Qid::new("q-001").unwrap())?
            .clone();
        (q.state == QuestionState::Answered).then_some(s)
    });
    let answered = clicked.elapsed();
    let q1 = &snap.task(&w.task).unwrap().questions[&gaffer::names::Qid::new("q-001").unwrap()];
    let d = q1.decision.clone().unwrap();
    assert_eq!(d.decided_by, DecidedBy::Human);
    assert_eq!(d.by.as_deref(), Some(ALICE));
    assert_eq!(
        q1.deadline.map(|t| t.to_string()).as_deref(),
        Some("2026-11-25T12:00:00Z"),
        "two business hours after 10:00 on the injected clock"
    );
    assert!(
        w.message("gaffer:q:q-001")
            .unwrap()
            .all_text()
            .contains("answered by <@U0ALICE>")
    );
    step(&w, "Alice clicked RS256: the provisional work is confirmed");

    // 6. Deployed to the lab (server-side apply, rollout), tested.
    w.wait(180, "InReview", |w| {
        w.status()
            .filter(|s| s.phase == Phase::InReview)
            .map(|_| ())
    });
    assert!(
        w.kube
            .get("apps/v1", "deployments", NS, "web-api")
            .is_some()
    );
    // The bot posts what the reconciler committed as soon as it sees it, not in the same
    // instant: the thread is read once the test result is in it (or the wait says what is).
    let thread = w.wait(60, "the test result in the thread", |w| {
        let t = w.thread_text();
        t.contains("✅ Integration tests: 3/3 passing").then_some(t)
    });
    assert!(
        thread.contains("✅ Integration tests: 3/3 passing"),
        "{thread}"
    );
    assert!(
        thread.contains("https://proj-api-service.builder.lab.ctoaas.co"),
        "{thread}"
    );
    step(&w, "deployed to ai-dev-proj-api-service-lab and tested");

    // 7. A PR per changed repo, with the story; the thread shows them and the button.
    let review = w.wait(60, "the review message", |w| {
        w.slack
            .messages()
            .into_iter()
            .find(|m| m.key().starts_with("gaffer:x:review-"))
    });
    let reviews = w
        .slack
        .messages()
        .iter()
        .filter(|m| m.key().starts_with("gaffer:x:review-"))
        .count();
    assert_eq!(reviews, 1, "one Approve & Promote message, with the links");
    w.wait(60, "a PR per repo", |w| {
        (w.gh.prs("example/domain-apis").len() == 1 && w.gh.prs("example/k8s-lab").len() == 1)
            .then_some(())
    });
    for repo in ["example/domain-apis", "example/k8s-lab"] {
        let prs = w.gh.prs(repo);
        assert_eq!(prs.len(), 1, "{repo}: {prs:#?}");
        let body = prs[0]["body"].as_str().unwrap();
        assert!(
            body.contains(TITLE) && body.contains("RS256") && body.contains("human by U0ALICE"),
            "{body}"
        );
        assert!(
            review
                .all_text()
                .contains(&format!("pr:{}", repo.split('/').nth(1).unwrap()))
        );
    }
    assert!(
        review
            .blocks
            .to_string()
            .contains(&format!("approve:{TASK}"))
    );
    step(
        &w,
        "pull requests opened; Approve & Promote offered in Slack",
    );

    // 8. Alice approves on GitHub; the webhook arrives; merged with the head SHAs.
    w.gh.review(
        "example/domain-apis",
        1,
        "alice",
        "APPROVED",
        "Ship it",
        &[],
    );
    let hooked = Instant::now();
    let resp = w.webhook_review("example/domain-apis", 1).unwrap();
    assert!(resp.contains("waking the task"), "{resp}");
    w.wait(60, "Promoted", |w| {
        w.status()
            .filter(|s| s.phase == Phase::Promoted)
            .map(|_| ())
    });
    let merges: Vec<_> =
        w.gh.requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
            .collect();
    let merged_after = merges.first().map(|m| m.at.duration_since(hooked));
    assert_eq!(merges.len(), 2, "each PR merged once");
    for m in &merges {
        assert_eq!(m.status, 200);
        assert_eq!(m.body["merge_method"], "squash");
    }
    w.wait(30, "the parent saying Promoted", |w| {
        w.message(&format!("gaffer:parent:{TASK}"))
            .filter(|p| p.all_text().contains("Phase: *Promoted*"))
    });
    step(&w, "approved by review, merged, promoted");

    // Every external effect once: the model's steps, the Slack posts, the applies, the PRs.
    assert_effects_once(&w);
    assert!(
        crate::test_opencode::step_counts(&w.llm, TITLE).len() >= 8,
        "every step reached the model"
    );
    let apis = w.tmp.path().join("origins/domain-apis.git");
    assert!(has_file(&apis, "main", "app/auth.py"));
    assert!(has_file(&apis, "main", "app/signing.txt"));
    insta::assert_snapshot!("e2e_story", story(&w.state));
    println!(
        "latency: task commit → OpenCode's first model request {:.2}s; Slack click → answer \
         recorded {:.2}s; webhook → first merge {:.2}s",
        session_started.as_secs_f64(),
        answered.as_secs_f64(),
        merged_after.unwrap_or_default().as_secs_f64()
    );
    if slow() {
        println!("\nThe Slack thread:\n{}", w.thread_text());
        println!("\nThe state repository's story:\n{}", story(&w.state));
    }
}

#[test]
fn nobody_answers_the_default_applies_at_the_deadline_and_a_late_click_redoes_the_work() {
    let w = E2e::new();
    // After the late answer the builder redoes the work from the question point.
    let mut redo = steps(w.task.task.as_str());
    redo.extend([
        Step::tool(
            "write",
            json!({"filePath": "repos/domain-apis/app/signing.txt", "content": "HS256\n"}),
        ),
        Step::tool(
            "write",
            json!({"filePath": "repos/k8s-lab/overlays/builder/main.py", "content": "print('JWT ready, HS256')\n"}),
        ),
        Step::tool(
            "write",
            json!({"filePath": format!("repos/domain-apis/app/fixed-{}.txt", w.task.task), "content": "tokens checked\n"}),
        ),
        Step::text("Switched to HS256.\nDONE: JWT authentication with HS256"),
    ]);
    w.llm.script(TITLE, redo);
    let _reconciler = w.reconciler();
    let _bot = w.bot();
    w.start_task();
    // The builder asks, goes on with RS256 and finishes; the task waits for the deadline.
    w.wait(180, "the builder done, waiting for the deadline", |w| {
        w.status()
            .filter(|s| s.reason.as_deref() == Some("ProvisionalWork"))
            .map(|_| ())
    });
    step(
        &w,
        "nobody answered; the work waits for the deadline (12:00)",
    );
    w.set_clock("2026-11-25T12:01:00Z");
    let q = w.wait(60, "the default applied and shown", |w| {
        w.message("gaffer:q:q-001")
            .filter(|m| m.all_text().contains("applied at the deadline"))
    });
    let snap = w.snapshot();
    let q1 =
        snap.task(&w.task).unwrap().questions[&gaffer::names::Qid::new("q-001").unwrap()].clone();
    assert_eq!(
        q1.decision.as_ref().unwrap().decided_by,
        DecidedBy::TimeoutDefault
    );
    w.wait(180, "InReview on the default", |w| {
        w.status()
            .filter(|s| {
                s.phase == Phase::InReview && s.reason.as_deref() == Some("AwaitingApproval")
            })
            .map(|_| ())
    });
    let first_head = w.gh.prs("example/domain-apis")[0]["head"]["sha"].clone();
    step(
        &w,
        "the default (RS256) applied at 12:00; deployed; PRs open",
    );

    // Alice changes the answer to HS256 from the message's "Change answer" form.
    let channel = w.channel().unwrap();
    w.slack
        .click(ALICE, &channel, &q.ts, &format!("change:{TASK}:q-001"));
    let (form_id, form) = w.slack.views().pop().unwrap();
    assert_eq!(form["callback_id"], "gaffer_answer");
    w.slack.submit(ALICE, &form_id, &[("choice", "selected:1")]);
    w.wait(60, "the builder told the new answer", |w| {
        w.llm
            .log_of(TITLE)
            .iter()
            .any(|l| l.last_user.contains("A person answered"))
            .then_some(())
    });
    let q1 = w.wait(30, "q-001 overridden in the state", |w| {
        let s = w.snapshot();
        let q = s
            .task(&w.task)?
            .questions
            .get(&gaffer::names::Qid::new("q-001").unwrap())?
            .clone();
        (q.state == QuestionState::Overridden).then_some(q)
    });
    let d = q1.decision.unwrap();
    assert_eq!(
        (d.decided_by, d.by.as_deref()),
        (DecidedBy::Human, Some(ALICE))
    );
    assert_eq!(d.choice, ["HS256"]);
    // The redone work is deployed, tested and pushed to the same PRs.
    w.wait(180, "back in review with the redone work", |w| {
        let pr = w.gh.prs("example/domain-apis");
        (w.status().is_some_and(|s| {
            s.phase == Phase::InReview && s.reason.as_deref() == Some("AwaitingApproval")
        }) && pr.len() == 1
            && pr[0]["head"]["sha"] != first_head)
            .then_some(())
    });
    let apis = w.tmp.path().join("origins/domain-apis.git");
    assert_eq!(
        git(
            &apis,
            &[
                "show",
                "gaffer/implement-jwt-authentication:app/signing.txt"
            ]
        ),
        "HS256"
    );
    step(
        &w,
        "HS256 chosen late: the work was redone and the PRs updated",
    );
    // Approve & Promote from Slack this time.
    let review = w.wait(60, "the review message", |w| {
        w.slack
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.key().starts_with("gaffer:x:review-"))
    });
    let action = review.blocks.to_string();
    let action_id = action
        .split('"')
        .find(|s| s.starts_with(&format!("approve:{TASK}")))
        .unwrap()
        .to_string();
    w.slack.click(ALICE, &channel, &review.ts, &action_id);
    w.wait(60, "Promoted", |w| {
        w.status()
            .filter(|s| s.phase == Phase::Promoted)
            .map(|_| ())
    });
    assert_eq!(
        git(&apis, &["show", "main:app/signing.txt"]),
        "HS256",
        "the late answer's work was merged"
    );
    let counts = crate::test_opencode::step_counts(&w.llm, TITLE);
    assert!(
        counts.values().all(|&n| n == 1),
        "each model step once: {counts:?}"
    );
    assert_eq!(counts.len(), 12, "{counts:?}");
    step(&w, "approved in Slack, merged, promoted");
}

#[test]
fn kill_9_of_the_reconciler_and_the_bot_at_20_random_points_changes_nothing() {
    let seed = std::env::var("GAFFER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("e2e crash test seed {seed} (set GAFFER_CRASH_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = E2e::new();
    let mut reconciler = Some(w.reconciler());
    let mut bot = Some(w.bot());
    w.start_task();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut kills, mut answered, mut reviewed) = (0, false, false);
    let mut phases: std::collections::BTreeMap<String, u32> = Default::default();
    let (mut reconciler_seen, mut bot_seen) = (String::new(), 0);
    loop {
        std::thread::sleep(Duration::from_millis(rng.u64(200..900)));
        // Kill one of them at a random moment, and start it again. A process is killed again
        // only once it made progress since its last start (a state commit; a Slack call), so
        // the kills spread over the whole scenario rather than piling up where starting is
        // slow; once promoted, anything goes.
        let head = git(&w.state, &["rev-parse", "main"]);
        let calls = w.slack.calls().len();
        let done = w.status().is_some_and(|s| s.phase == Phase::Promoted);
        let killed = if rng.bool() {
            let progressed = head != reconciler_seen || done;
            if progressed {
                reconciler.take().unwrap().kill9();
                reconciler = Some(w.reconciler());
                reconciler_seen = head;
            }
            progressed
        } else {
            let progressed = calls != bot_seen || done;
            if progressed {
                bot.take().unwrap().kill9();
                bot = Some(w.bot());
                bot_seen = w.slack.calls().len();
            }
            progressed
        };
        if killed {
            kills += 1;
            let at = w
                .status()
                .map_or("Pending".to_string(), |s| s.phase.to_string());
            *phases.entry(at).or_insert(0) += 1;
        }
        // Alice acts as soon as she can; a click the bot did not acknowledge is delivered
        // again, as Slack does.
        if !answered && let (Some(q), Some(channel)) = (w.message("gaffer:q:q-001"), w.channel()) {
            w.set_clock("2026-11-25T10:30:00Z");
            answered = w
                .slack
                .try_click(
                    ALICE,
                    &channel,
                    &q.ts,
                    &format!("answer:{TASK}:q-001:0"),
                    Duration::from_secs(5),
                )
                .is_some();
        }
        let st = w.status();
        if !reviewed
            && st.as_ref().is_some_and(|s| {
                s.phase == Phase::InReview && s.reason.as_deref() == Some("AwaitingApproval")
            })
            && w.gh.prs("example/domain-apis").len() == 1
        {
            w.gh.review(
                "example/domain-apis",
                1,
                "alice",
                "APPROVED",
                "Ship it",
                &[],
            );
            reviewed = true;
        }
        if reviewed {
            // The webhook may find the reconciler dead; its restart looks at reviews anyway.
            let _ = w.webhook_review("example/domain-apis", 1);
        }
        if kills >= 20 && st.is_some_and(|s| s.phase == Phase::Promoted) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not promoted after {kills} kills (seed {seed}): {:#?}\n{}",
            w.status(),
            w.logs()
        );
    }
    println!("killed {kills} times, in these phases: {phases:?}");
    w.wait(60, "the thread to catch up", |w| {
        let n = w
            .snapshot()
            .task(&w.task)?
            .progress
            .as_ref()?
            .milestones
            .len();
        let posted = w
            .slack
            .messages()
            .iter()
            .filter(|m| m.key().starts_with("gaffer:m:"))
            .count();
        let p = w.message(&format!("gaffer:parent:{TASK}"))?;
        (posted == n && p.all_text().contains("Phase: *Promoted*")).then_some(())
    });
    drop(bot);
    drop(reconciler);
    // The same story, and every effect once.
    insta::assert_snapshot!("e2e_story", story(&w.state));
    assert_effects_once(&w);
}
