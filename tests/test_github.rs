//! The GitHub forge (octocrab, the production client) against the fake GitHub API backed by
//! local bare repositories, with the real `gaffer reconcile` and the scripted builder: one PR
//! per repo even across a kill -9 at the worst moment, approvals by review (never the
//! author's own or an unlisted reviewer's), changes requested fed back to the builder and the
//! new push updating the PR, blocked merges, rate limits, webhooks and image builds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use gaffer::cli::demo::{PERSON, bare_repo_with, sample_app, state_files};
use gaffer::names::TaskRef;
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{Phase, TaskStatus};
use serde_json::Value;

use crate::common::github::{BOT, FakeGitHub, TOKEN, wait_for};
use crate::common::{Proc, commit_as, commit_to_bare, free_port, git, snapshot_of};

const REPO: &str = "example/web-api";
const SECRET: &[u8] = b"webhook-secret";

/// The builder passes the lab tests at once, asks one question, and answers review feedback
/// with a new commit.
const SCRIPT: &str = r#"steps:
  - todo: Read the existing API code
  - write:
      path: web-api/app/fixed-{{task}}.txt
      content: "token lifetime from settings\n"
  - question:
      text: Should I use RS256 or HS256 for JWT signing?
      header: JWT signing
      options:
        - {label: RS256 (Recommended), description: "Asymmetric keys"}
        - {label: HS256, description: "One shared secret"}
  - write:
      path: web-api/app/signing-{{task}}.txt
      content: "algorithm: {{answer}}\n"
  - done: JWT authentication implemented
fix:
  - write:
      path: web-api/app/review-{{task}}.txt
      content: "review addressed\n"
  - done: Addressed the review
"#;

struct Hub {
    tmp: tempfile::TempDir,
    state: PathBuf,
    origin: PathBuf,
    fake: FakeGitHub,
    port: u16,
    task: TaskRef,
}

impl Hub {
    /// `lab_extra` is added to the project's `lab:` (e.g. an image build).
    fn new(lab_extra: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origins/web-api.git");
        let mut app = sample_app();
        for f in &mut app {
            if f.0 == ".gaffer/agent-script.yaml" {
                f.1 = Some(SCRIPT.as_bytes().to_vec());
            }
        }
        bare_repo_with(&origin, &app, "web-api").unwrap();
        let state = tmp.path().join("state.git");
        let mut files = state_files(&origin, "1h");
        let settings = String::from_utf8(files[0].1.clone().unwrap())
            .unwrap()
            .replace("slack_users: []", "slack_users: [], reviewers: [alice]");
        files[0].1 = Some(settings.into_bytes());
        let project = String::from_utf8(files[1].1.clone().unwrap())
            .unwrap()
            .replace("base: main}", &format!("base: main, github: {REPO}}}"))
            .replace(
                "forge: {kind: local, merge_method: merge}",
                "forge: {kind: github, merge_method: squash}",
            )
            .replace(
                "test: sh tests/run-tests.sh, test_without_deploy: true}",
                &format!("test: sh tests/run-tests.sh, test_without_deploy: true{lab_extra}}}"),
            );
        files[1].1 = Some(project.into_bytes());
        bare_repo_with(&state, &files, "state").unwrap();
        let fake = FakeGitHub::start();
        fake.add_repo(REPO, &origin);
        std::fs::write(tmp.path().join("webhook.secret"), SECRET).unwrap();
        let port = free_port();
        Hub {
            tmp,
            state,
            origin,
            fake,
            port,
            task: TaskRef::parse("demo/web-api/jwt").unwrap(),
        }
    }

    fn reconciler(&self, poll_secs: &str) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("daemon.log"))
            .unwrap();
        Proc(
            crate::common::gaffer(self.tmp.path())
                .args([
                    "reconcile",
                    "--lab",
                    "render-only",
                    "--forge-poll-secs",
                    poll_secs,
                ])
                .args(["--state", self.state.to_str().unwrap()])
                .arg("--data-dir")
                .arg(self.tmp.path().join("data"))
                .arg("--builders")
                .arg(self.tmp.path().join("builders"))
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .arg("--webhook-secret-file")
                .arg(self.tmp.path().join("webhook.secret"))
                .env("GITHUB_TOKEN", TOKEN)
                .env("GITHUB_API_URL", self.fake.url())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn add_task(&self) {
        commit_to_bare(
            &self.state,
            "main",
            &[(
                "projects/demo/web-api/tasks/jwt/task.yaml",
                "title: Implement JWT authentication\ndescription: Add JWT auth to the API.\npriority: high\n",
            )],
            "task",
        );
    }

    fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.state, &self.tmp.path().join("ro"))
    }

    fn status(&self) -> Option<TaskStatus> {
        self.snapshot()
            .task(&self.task)
            .and_then(|e| e.status.as_deref().cloned())
    }

    /// Waits until `f(status)` holds, answering q-001 as the person meanwhile.
    fn wait(&self, secs: u64, what: &str, f: impl Fn(&TaskStatus) -> bool) -> TaskStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let mut answered = false;
        loop {
            let snap = self.snapshot();
            if let Some(e) = snap.task(&self.task) {
                let q1 = gaffer::names::Qid::new("q-001").unwrap();
                if !answered && e.questions.get(&q1).is_some_and(|q| q.decision.is_none()) {
                    answered = true;
                    commit_as(
                        &self.state,
                        PERSON,
                        &[(
                            "projects/demo/web-api/tasks/jwt/answers/q-001.yaml",
                            &format!("choice: HS256\nby: {PERSON}\n"),
                        )],
                        "answer",
                    );
                }
                if let Some(st) = e.status.as_deref()
                    && f(st)
                {
                    return st.clone();
                }
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}: {:#?}\n{}",
                    snap.task(&self.task).and_then(|e| e.status.clone()),
                    std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn in_review(&self) -> TaskStatus {
        self.wait(60, "InReview with a PR", |s| {
            s.phase == Phase::InReview
                && s.repos.values().any(|r| r.change.is_some())
                && s.reason.as_deref() == Some("AwaitingApproval")
        })
    }

    /// The task's milestone texts.
    fn milestones(&self) -> Vec<String> {
        self.snapshot()
            .task(&self.task)
            .and_then(|e| e.progress.clone())
            .map(|p| p.milestones.into_iter().map(|m| m.text).collect())
            .unwrap_or_default()
    }

    /// The person approves with an `approvals/ok.yaml` they commit.
    fn approve(&self) {
        let status = self.status();
        commit_as(
            &self.state,
            PERSON,
            &[(
                "projects/demo/web-api/tasks/jwt/approvals/ok.yaml",
                &crate::common::approval_body(PERSON, status.as_ref()),
            )],
            "approve",
        );
    }

    fn pr(&self) -> Value {
        let prs = self.fake.prs(REPO);
        assert_eq!(prs.len(), 1, "one pull request: {prs:#?}");
        prs[0].clone()
    }

    fn branch_head(&self) -> String {
        git(&self.origin, &["rev-parse", "refs/heads/gaffer/jwt"])
    }

    fn reviews_polled(&self) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/reviews?"))
            .count()
    }

    fn merges(&self) -> Vec<crate::common::github::Request> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/merge"))
            .collect()
    }

    fn session(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(
                self.tmp
                    .path()
                    .join("data/scripted/scripted-demo-web-api-jwt.json"),
            )
            .unwrap(),
        )
        .unwrap()
    }
}

/// Hex ids and the temp dir vary between runs.
fn redact(body: &str) -> String {
    // Deadlines are "now + 1h".
    let body = match body.find("; deadline ") {
        Some(a) => match body[a..].find(')') {
            Some(b) => format!("{}; deadline <time>{}", &body[..a], &body[a + b..]),
            None => body.to_string(),
        },
        None => body.to_string(),
    };
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 7 {
            out.push_str("<sha>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in body.chars() {
        if c.is_ascii_hexdigit() && c.is_ascii_lowercase() || c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[test]
fn one_pr_even_across_a_kill_and_only_an_allowed_reviewers_approval_of_the_head_merges_it() {
    let hub = Hub::new("");
    // The worst moment: the PR exists on GitHub, gaffer has not recorded it.
    hub.fake.stall_create();
    let d = hub.reconciler("1");
    hub.add_task();
    let _ = hub.wait(60, "the PR to be created", |_| hub.fake.is_stalled());
    d.kill9();
    hub.fake.release();
    let _d = hub.reconciler("1");
    let st = hub.in_review();
    let pr = hub.pr();
    let change = st.repos.values().find_map(|r| r.change.clone()).unwrap();
    assert_eq!(change.number, 1);
    assert_eq!(
        change.url.as_deref(),
        Some("https://github.com/example/web-api/pull/1")
    );
    assert_eq!(pr["head"]["ref"], "gaffer/jwt");
    assert_eq!(pr["base"]["ref"], "main");
    assert_eq!(
        pr["head"]["sha"],
        hub.branch_head().as_str(),
        "the branch was pushed"
    );
    insta::assert_snapshot!("pr_body", redact(pr["body"].as_str().unwrap()));

    // The author's own approval and an unlisted reviewer's never count.
    hub.fake.review(REPO, 1, BOT, "APPROVED", "LGTM (me)", &[]);
    hub.fake.review(REPO, 1, "mallory", "APPROVED", "LGTM", &[]);
    let polled = hub.reviews_polled();
    wait_for(30, "three more review polls", || {
        hub.reviews_polled() >= polled + 3
    });
    assert_eq!(hub.status().unwrap().phase, Phase::InReview);
    assert!(hub.merges().is_empty());
    // alice (listed in authors.reviewers) approves the head: merged with its SHA, squashed.
    hub.fake
        .review(REPO, 1, "alice", "APPROVED", "Ship it", &[]);
    let st = hub.wait(30, "Promoted", |s| s.phase == Phase::Promoted);
    assert!(
        st.message
            .unwrap_or_default()
            .contains("alice (GitHub review)")
    );
    let merges = hub.merges();
    assert_eq!(merges.len(), 1, "merged once");
    assert_eq!(merges[0].body["sha"], pr["head"]["sha"]);
    assert_eq!(merges[0].body["merge_method"], "squash");
    let merged = hub.pr();
    assert_eq!(merged["merged"], true);
    let change = st.repos.values().find_map(|r| r.change.clone()).unwrap();
    assert_eq!(change.state, "merged");
    assert_eq!(
        change.merge_commit.as_ref(),
        merged["merge_commit_sha"]
            .as_str()
            .map(str::to_string)
            .as_ref()
    );
    assert_eq!(
        git(&hub.origin, &["rev-parse", "main"]),
        merged["merge_commit_sha"].as_str().unwrap(),
        "main has the merge"
    );
    let creates = hub
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pulls"))
        .count();
    assert_eq!(creates, 1, "never a second PR");
}

#[test]
fn changes_requested_reach_the_builder_the_new_push_updates_the_pr_and_an_approval_file_promotes() {
    let hub = Hub::new("");
    let _d = hub.reconciler("1");
    hub.add_task();
    hub.in_review();
    let first_head = hub.pr()["head"]["sha"].as_str().unwrap().to_string();
    let id = hub.fake.review(
        REPO,
        1,
        "alice",
        "CHANGES_REQUESTED",
        "Please handle token expiry.",
        &[("app/main.py", 3, "check exp here")],
    );
    hub.wait(60, "the review sent to the builder", |s| {
        s.effects.reviews_sent.contains(&id)
    });
    let session = hub.session();
    let prompts: Vec<&str> = session["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        prompts.contains(&format!("feedback-review-{id}").as_str()),
        "{prompts:?}"
    );
    let text = session["feedback"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        text.contains("alice on web-api #1")
            && text.contains("Please handle token expiry.")
            && text.contains("app/main.py:3: check exp here"),
        "{text}"
    );
    // The builder's new commit goes through the lab again and updates the same PR.
    let st = hub.wait(60, "back in review with the new push", |s| {
        s.phase == Phase::InReview
            && s.repos.values().any(|r| {
                r.change
                    .as_ref()
                    .and_then(|c| c.pushed.as_deref())
                    .is_some_and(|p| p != first_head)
            })
    });
    let pr = hub.pr();
    assert_ne!(
        pr["head"]["sha"],
        first_head.as_str(),
        "{st:#?}\norigin: {}\n{}",
        hub.branch_head(),
        git(&hub.origin, &["log", "--oneline", "--all"])
    );
    assert_eq!(pr["head"]["sha"], hub.branch_head().as_str());
    assert!(
        git(&hub.origin, &["ls-tree", "--name-only", "-r", "gaffer/jwt"])
            .contains("app/review-jwt.txt")
    );
    assert_eq!(
        st.repos
            .values()
            .find_map(|r| r.change.clone())
            .unwrap()
            .number,
        1
    );
    // An approval committed by someone who may not approve is ignored, and said so.
    commit_to_bare(
        &hub.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/jwt/approvals/forged.yaml",
            &format!("by: {PERSON}\n"),
        )],
        "a forged approval",
    );
    hub.wait(30, "the forged approval noticed", |s| {
        s.effects
            .approvals_ignored
            .keys()
            .any(|k| k.as_str() == "forged")
    });
    assert_eq!(hub.status().unwrap().phase, Phase::InReview);
    assert!(hub.merges().is_empty());
    // The old "changes requested" is handled once; an approvals/ file now promotes.
    hub.approve();
    let st = hub.wait(30, "Promoted", |s| s.phase == Phase::Promoted);
    assert!(st.message.unwrap_or_default().contains(PERSON));
    assert_eq!(hub.merges().len(), 1);
    assert_eq!(hub.merges()[0].body["sha"], pr["head"]["sha"]);
    let reviews: usize = hub.session()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.as_str().unwrap().starts_with("feedback-review-"))
        .count();
    assert_eq!(reviews, 1, "the review was sent once");
}

#[test]
fn a_moved_head_or_a_conflict_blocks_the_merge_and_the_task_stays_in_review() {
    let hub = Hub::new("");
    let _d = hub.reconciler("1");
    hub.add_task();
    hub.in_review();
    let ours = hub.branch_head();
    // Someone pushes to the PR branch on GitHub: gaffer's SHA no longer matches.
    commit_to_bare(
        &hub.origin,
        "gaffer/jwt",
        &[("app/someone.txt", "x\n")],
        "someone else",
    );
    hub.approve();
    let st = hub.wait(30, "MergeBlocked", |s| {
        s.reason.as_deref() == Some("MergeBlocked")
    });
    assert_eq!(st.phase, Phase::InReview);
    assert!(
        st.message
            .as_deref()
            .unwrap()
            .contains("Head branch was modified"),
        "{st:?}"
    );
    let blocked = hub.merges();
    assert!(!blocked.is_empty() && blocked.iter().all(|m| m.status == 409));
    assert_eq!(blocked[0].body["sha"], ours.as_str());
    // Put the branch back and make main conflict with it: still no merge.
    git(&hub.origin, &["update-ref", "refs/heads/gaffer/jwt", &ours]);
    commit_to_bare(
        &hub.origin,
        "main",
        &[("app/fixed-jwt.txt", "a conflicting line\n")],
        "conflict",
    );
    // The builder is asked once to merge the base in; its new commits were never approved,
    // so the task waits for a new approval of exactly them, which the person gives.
    hub.wait(30, "a new review round awaiting approval", |s| {
        s.review_round >= 2 && s.reason.as_deref() == Some("AwaitingApproval")
    });
    hub.approve();
    hub.wait(30, "blocked by the conflict", |s| {
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("not mergeable"))
    });
    assert_eq!(hub.status().unwrap().phase, Phase::InReview);
    assert!(hub.pr()["merged"] != true);
    let texts = hub.milestones();
    assert!(
        texts
            .iter()
            .any(|t| t
                .starts_with("⛔ merge blocked: web-api #1: merging #1: Head branch was modified")),
        "{texts:?}"
    );
}

#[test]
fn a_rate_limit_is_waited_out_until_its_reset() {
    let hub = Hub::new("");
    let _d = hub.reconciler("1");
    hub.add_task();
    hub.in_review();
    let before = hub.fake.requests().len();
    let reset_in = 2;
    hub.fake.rate_limit(1, reset_in);
    hub.fake.review(REPO, 1, "alice", "APPROVED", "ok", &[]);
    hub.wait(30, "Promoted", |s| s.phase == Phase::Promoted);
    let reqs = hub.fake.requests();
    let after: Vec<_> = reqs[before..].iter().collect();
    let refused = after
        .iter()
        .position(|r| r.status == 403)
        .expect("a refused request");
    let next = after[refused + 1..]
        .iter()
        .find(|r| r.path != "/rate_limit")
        .expect("work went on");
    let waited = next.at.duration_since(after[refused].at);
    // The reset is whole seconds away; the next call came after it (allowing for where in
    // the second the limit was set).
    assert!(
        waited >= Duration::from_secs(reset_in - 1),
        "asked again after {waited:?}"
    );
}

#[test]
fn a_signed_review_webhook_wakes_the_task_and_a_bad_one_is_refused() {
    let hub = Hub::new("");
    // Polling so slow that only the webhook can explain a quick promotion.
    let _d = hub.reconciler("600");
    hub.add_task();
    hub.in_review();
    hub.fake
        .review(REPO, 1, "alice", "APPROVED", "Ship it", &[]);
    let body = format!(
        r#"{{"action":"submitted","review":{{"state":"approved","user":{{"login":"alice"}}}},"pull_request":{{"number":1}},"repository":{{"full_name":"{REPO}"}}}}"#
    );
    let post = |sig: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", hub.port)).unwrap();
        write!(
            s,
            "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request_review\r\n\
             X-Hub-Signature-256: {sig}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let bad = post("sha256=0000");
    assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");
    let good = post(&gaffer::server::sign(SECRET, body.as_bytes()));
    assert!(
        good.starts_with("HTTP/1.1 202") && good.contains("waking the task"),
        "{good}"
    );
    hub.wait(20, "Promoted by the webhook's wake-up", |s| {
        s.phase == Phase::Promoted
    });
}

#[test]
fn an_image_built_by_the_workflow_is_deployed_with_its_sha_tag() {
    let hub = Hub::new(", image: {repo: web-api, workflow: build.yml, name: ghcr.io/astral-sh/uv}");
    let _d = hub.reconciler("1");
    hub.add_task();
    hub.in_review();
    let runs = hub.fake.runs();
    assert_eq!(runs.len(), 1, "one dispatch for the commit: {runs:#?}");
    let sha = runs[0]["head_sha"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["head_branch"], "gaffer/jwt");
    assert_eq!(runs[0]["conclusion"], "success");
    let rendered =
        std::fs::read_to_string(hub.tmp.path().join("data/lab/demo-web-api/rendered.yaml"))
            .unwrap();
    assert!(
        rendered.contains(&format!("image: ghcr.io/example/web-api:{sha}")),
        "{rendered}"
    );
    let texts = hub.milestones();
    assert!(
        texts
            .iter()
            .any(|t| t == &format!("🏗 image built: ghcr.io/example/web-api:{sha}")),
        "{texts:?}"
    );
}
