//! `gaffer slack` as a real process against the fake Slack (Web API + Socket Mode, or the
//! Events API), next to a real `gaffer reconcile` with the scripted agent: the form commits a
//! task for the user, the thread follows the task once and in order, buttons answer and
//! approve, strangers are refused, and kill -9 neither repeats nor skips a post.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gaffer::cli::demo::{PERSON, bare_repo_with, sample_app, state_files};
use gaffer::names::{Qid, TaskRef};
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{DecidedBy, Phase};
use serde_json::Value;

use crate::common::slack::{APP_TOKEN, BOT_TOKEN, FakeSlack, Message};
use crate::common::{Proc, commit_as, commit_to_bare, free_port, git, snapshot_of};

pub(crate) const ALLOWED: &str = "U0ALLOWED";
pub(crate) const STRANGER: &str = "U0STRANGER";
pub(crate) const CHANNEL: &str = "demo-web-api";

/// The builder's script for the Slack scenario: a plain question, a free-text one, done.
const SCRIPT: &str = r#"steps:
  - todo: Read the existing API code
  - question:
      text: Should I use RS256 or HS256 for JWT signing?
      header: JWT signing
      options:
        - {label: RS256 (Recommended), description: "Asymmetric keys"}
        - {label: HS256, description: "One shared secret"}
  - write:
      path: web-api/app/signing-{{task}}.txt
      content: "algorithm: {{answer}}\n"
  - question:
      text: How long should access tokens live?
      header: Token lifetime
      custom: true
      options:
        - {label: 15 minutes (Recommended)}
        - {label: 1 hour}
  - write:
      path: web-api/app/fixed-{{task}}.txt
      content: "lifetime: {{answer}}\n"
  - done: JWT authentication implemented
"#;

pub(crate) struct World {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) fake: FakeSlack,
}

impl World {
    /// A state repo whose project builds the demo app with `script` (None: the demo's),
    /// Slack user ALLOWED listed (as Alice), question timeout `timeout`.
    pub(crate) fn new(script: Option<&str>, timeout: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origins/web-api.git");
        let mut app = sample_app();
        if let Some(s) = script {
            for f in &mut app {
                if f.0 == ".gaffer/agent-script.yaml" {
                    f.1 = Some(s.as_bytes().to_vec());
                }
            }
        }
        bare_repo_with(&origin, &app, "web-api").unwrap();
        let state = tmp.path().join("state.git");
        let mut files = state_files(&origin, timeout);
        let settings = String::from_utf8(files[0].1.clone().unwrap())
            .unwrap()
            .replace(
                "slack_users: []",
                &format!(
                    "slack_users: [{ALLOWED}], slack_names: {{{ALLOWED}: \"Alice Example <alice@example.com>\"}}"
                ),
            );
        files[0].1 = Some(settings.into_bytes());
        bare_repo_with(&state, &files, "state").unwrap();
        World {
            tmp,
            state,
            fake: FakeSlack::start(),
        }
    }

    pub(crate) fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join(name))
            .unwrap()
    }

    pub(crate) fn logs(&self) -> String {
        let r = |n: &str| std::fs::read_to_string(self.tmp.path().join(n)).unwrap_or_default();
        format!(
            "--- bot.log\n{}\n--- daemon.log\n{}",
            r("bot.log"),
            r("daemon.log")
        )
    }

    pub(crate) fn reconciler(&self) -> Proc {
        let log = self.log("daemon.log");
        Proc(
            Command::new(env!("CARGO_BIN_EXE_gaffer"))
                .args([
                    "reconcile",
                    "--lab",
                    "render-only",
                    "--state",
                    self.state.to_str().unwrap(),
                ])
                .arg("--data-dir")
                .arg(self.tmp.path().join("data"))
                .arg("--builders")
                .arg(self.tmp.path().join("builders"))
                .env("RUST_LOG", "warn")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    pub(crate) fn bot_command(&self) -> Command {
        let log = self.log("bot.log");
        let mut c = Command::new(env!("CARGO_BIN_EXE_gaffer"));
        c.args(["slack", "--state", self.state.to_str().unwrap()])
            .arg("--data-dir")
            .arg(self.tmp.path().join("bot"))
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_SIGNING_SECRET")
            .env("SLACK_BOT_TOKEN", BOT_TOKEN)
            .env("GAFFER_SLACK_API_URL", self.fake.api_url())
            .env("RUST_LOG", "info")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        c
    }

    /// `gaffer slack` serving the Events API on `port` with `secret`, once it listens.
    pub(crate) fn events_bot(&self, port: u16, secret: &str) -> Proc {
        let bot = Proc(
            self.bot_command()
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("SLACK_SIGNING_SECRET", secret)
                .spawn()
                .unwrap(),
        );
        wait_listening(port, self);
        bot
    }

    /// `gaffer slack` in Socket Mode.
    pub(crate) fn bot(&self) -> Proc {
        Proc(
            self.bot_command()
                .env("SLACK_APP_TOKEN", APP_TOKEN)
                .spawn()
                .unwrap(),
        )
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.state, &self.tmp.path().join("ro"))
    }

    pub(crate) fn wait<T>(
        &self,
        secs: u64,
        what: &str,
        mut f: impl FnMut(&World) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                let msgs: Vec<String> = self
                    .fake
                    .messages()
                    .iter()
                    .map(|m| format!("{} {:?} {} {}", m.ts, m.thread_ts, m.key(), m.text))
                    .collect();
                panic!(
                    "timed out waiting for {what}\nmessages:\n{}\n{}",
                    msgs.join("\n"),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub(crate) fn channel_id(&self) -> Option<String> {
        self.fake
            .channels()
            .into_iter()
            .find(|(_, n)| n == CHANNEL)
            .map(|(id, _)| id)
    }

    /// The message whose key is `key`.
    pub(crate) fn message(&self, key: &str) -> Option<Message> {
        self.fake.messages().into_iter().find(|m| m.key() == key)
    }
}

pub(crate) fn phase_of(snap: &Snapshot, t: &TaskRef) -> Option<Phase> {
    snap.task(t)?.status.as_ref().map(|s| s.phase)
}

/// Checks the thread of `t`: one parent, then every milestone once and in order, every
/// question once; all in the project's channel and the task's thread.
fn assert_thread_once_in_order(w: &World, t: &TaskRef) {
    let snap = w.snapshot();
    let entry = snap.task(t).unwrap();
    let milestones = entry.progress.as_ref().unwrap().milestones.len();
    let msgs = w.fake.messages();
    let channel = w.channel_id().unwrap();
    let parents: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.key() == format!("gaffer:parent:{t}"))
        .collect();
    assert_eq!(parents.len(), 1, "one parent message");
    let parent = parents[0];
    assert_eq!(parent.channel, channel);
    assert!(parent.thread_ts.is_none());
    let thread: Vec<&Message> = msgs
        .iter()
        .filter(|m| m.thread_ts.as_deref() == Some(parent.ts.as_str()))
        .collect();
    assert!(thread.iter().all(|m| m.channel == channel));
    let seqs: Vec<u32> = thread
        .iter()
        .filter_map(|m| {
            m.key()
                .strip_prefix("gaffer:m:")
                .map(|s| s.parse().unwrap())
        })
        .collect();
    let want: Vec<u32> = (1..=milestones as u32).collect();
    assert_eq!(seqs, want, "every milestone once, in order");
    for qid in entry.questions.keys() {
        let n = thread
            .iter()
            .filter(|m| m.key() == format!("gaffer:q:{qid}"))
            .count();
        assert_eq!(n, 1, "{qid} posted once");
    }
    // Milestone texts are the status's, in order.
    let texts: Vec<&str> = thread
        .iter()
        .filter(|m| m.key().starts_with("gaffer:m:"))
        .map(|m| m.text.as_str())
        .collect();
    let progress: Vec<String> = entry
        .progress
        .as_ref()
        .unwrap()
        .milestones
        .iter()
        .map(|m| gaffer::chat::slack::blocks::escape(&m.text, 3000))
        .collect();
    assert_eq!(texts, progress);
}

#[test]
fn a_task_started_from_the_form_is_followed_answered_and_approved_in_its_thread() {
    let w = World::new(Some(SCRIPT), "1h");
    let _reconciler = w.reconciler();
    let _bot = w.bot();

    // A stranger cannot start work: refused in the ack, no form.
    let ack = w.fake.slash(STRANGER, "C0GENERAL", "start");
    assert!(
        ack["text"].as_str().unwrap().contains("not allowed"),
        "{ack}"
    );
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(w.fake.views().is_empty());

    // The form: categories and projects from the state repo, the category preset.
    w.fake.slash(ALLOWED, "C0GENERAL", "start demo");
    let (view_id, view) = w.fake.views().pop().expect("the form opened");
    assert_eq!(view["callback_id"], "gaffer_start");
    assert_eq!(
        view["blocks"][1]["element"]["options"][0]["value"],
        "demo/web-api"
    );
    // Choosing a category updates the form in place.
    w.fake.select_in_view(ALLOWED, &view_id, "category", "demo");
    assert!(
        w.fake
            .calls()
            .iter()
            .any(|c| c.method == "views.update" && c.body["view_id"] == view_id.as_str())
    );
    // A form without a title stays open with the error.
    let ack = w.fake.submit(
        ALLOWED,
        &view_id,
        &[
            ("category", "selected:demo"),
            ("project", "selected:demo/web-api"),
            ("title", "  "),
            ("priority", "selected:high"),
        ],
    );
    assert_eq!(ack["response_action"], "errors", "{ack}");
    assert!(ack["errors"]["title"].as_str().is_some());
    let ack = w.fake.submit(
        ALLOWED,
        &view_id,
        &[
            ("category", "selected:demo"),
            ("project", "selected:demo/web-api"),
            ("title", "Implement JWT authentication"),
            ("description", "Add JWT auth to the API"),
            ("priority", "selected:high"),
        ],
    );
    assert!(
        ack.is_null() || ack.get("response_action").is_none(),
        "{ack}"
    );
    // Committed before the ack, for the user: author from the mapping, trailer with the id.
    let t = TaskRef::parse("demo/web-api/implement-jwt-authentication").unwrap();
    let path = format!("projects/{}/tasks/{}/task.yaml", t.project, t.task);
    let log = git(
        &w.state,
        &[
            "log",
            "-1",
            "--format=%an <%ae>|%ce|%B",
            "main",
            "--",
            &path,
        ],
    );
    assert!(
        log.starts_with("Alice Example <alice@example.com>|slack-bot@gaffer.invalid|"),
        "{log}"
    );
    assert!(log.contains("Slack-User: U0ALLOWED"), "{log}");
    let spec = w.snapshot().task(&t).unwrap().spec.clone().unwrap();
    assert_eq!(spec.title, "Implement JWT authentication");
    assert_eq!(spec.description, "Add JWT auth to the API");
    assert_eq!(spec.priority, gaffer::state::spec::Priority::High);
    assert!(
        w.fake
            .ephemerals()
            .iter()
            .any(|(c, u, text)| c == "C0GENERAL" && u == ALLOWED && text.contains(&t.to_string()))
    );

    // The first question arrives in the thread, broadcast, with buttons and the deadline
    // in the business time zone.
    let q1 = w.wait(60, "q-001 in the thread", |w| w.message("gaffer:q:q-001"));
    let channel = w.channel_id().unwrap();
    assert!(q1.broadcast);
    let text = q1.all_text();
    assert!(text.contains("RS256 or HS256"), "{text}");
    assert!(text.contains("GMT") || text.contains("BST"), "{text}");
    let buttons = q1
        .blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap();
    assert_eq!(buttons["elements"][0]["style"], "primary");
    assert!(
        buttons["elements"].as_array().unwrap().len() == 2,
        "no Other… without custom"
    );

    // A stranger's click commits nothing and is told why.
    let answer_hs = format!("answer:{t}:q-001:1");
    w.fake.click(STRANGER, &channel, &q1.ts, &answer_hs);
    assert!(
        w.fake
            .ephemerals()
            .iter()
            .any(|(_, u, text)| u == STRANGER && text.contains("not allowed"))
    );
    let q1_path = format!("projects/{}/tasks/{}/answers/q-001.yaml", t.project, t.task);
    assert!(
        git(&w.state, &["log", "--format=%H", "main", "--", &q1_path]).is_empty(),
        "nothing committed for the stranger"
    );

    // ALLOWED clicks HS256: the answer is committed (before the ack) and the message shows
    // who decided, without buttons.
    w.fake.click(ALLOWED, &channel, &q1.ts, &answer_hs);
    let body = git(&w.state, &["show", &format!("main:{q1_path}")]);
    assert!(
        body.contains("choice: HS256") && body.contains("by: U0ALLOWED"),
        "{body}"
    );
    let q1 = w
        .message("gaffer:q:q-001")
        .unwrap_or_else(|| panic!("{:#?}\n{}", w.fake.messages(), w.logs()));
    assert!(q1.updates >= 1);
    assert!(
        q1.all_text().contains("answered by <@U0ALLOWED>"),
        "{}",
        q1.all_text()
    );
    assert!(
        q1.blocks
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions")
    );
    let snap = w.wait(30, "q-001 decided", |w| {
        let s = w.snapshot();
        let d = s
            .task(&t)?
            .questions
            .get(&Qid::new("q-001").unwrap())?
            .decision
            .clone()?;
        (d.decided_by == DecidedBy::Human).then_some(s)
    });
    let d = snap.task(&t).unwrap().questions[&Qid::new("q-001").unwrap()]
        .decision
        .clone()
        .unwrap();
    assert_eq!(d.choice, ["HS256"]);
    assert_eq!(d.by.as_deref(), Some(ALLOWED));

    // Socket Mode survives a dropped connection: the client reconnects.
    w.fake.disconnect_all();

    // The second question takes free text: "Other…" opens a form whose answer is committed.
    let q2 = w.wait(60, "q-002 in the thread", |w| w.message("gaffer:q:q-002"));
    let other = format!("other:{t}:q-002");
    assert!(q2.blocks.to_string().contains(&other));
    w.fake.click(ALLOWED, &channel, &q2.ts, &other);
    let (form_id, form) = w.fake.views().pop().unwrap();
    assert_eq!(form["callback_id"], "gaffer_answer");
    let ack = w
        .fake
        .submit(ALLOWED, &form_id, &[("text", "45 minutes, please")]);
    assert!(ack.is_null(), "{ack}");
    let q2_path = format!("projects/{}/tasks/{}/answers/q-002.yaml", t.project, t.task);
    let body = git(&w.state, &["show", &format!("main:{q2_path}")]);
    assert!(body.contains("45 minutes, please"), "{body}");
    assert!(
        w.message("gaffer:q:q-002")
            .unwrap()
            .all_text()
            .contains("45 minutes, please")
    );

    // Review: the approve button; a click commits the approval and the task is promoted.
    let review = w.wait(60, "the review message", |w| {
        w.fake
            .messages()
            .into_iter()
            .find(|m| m.key().starts_with("gaffer:x:review-"))
    });
    let approve = format!("approve:{t}");
    assert!(review.blocks.to_string().contains(&approve));
    w.fake.click(ALLOWED, &channel, &review.ts, &approve);
    w.wait(60, "Promoted", |w| {
        (phase_of(&w.snapshot(), &t) == Some(Phase::Promoted)).then_some(())
    });
    let approvals = git(
        &w.state,
        &[
            "ls-tree",
            "--name-only",
            "main",
            &format!("projects/{}/tasks/{}/approvals/", t.project, t.task),
        ],
    );
    assert_eq!(approvals.lines().count(), 1, "{approvals}");
    // The parent message follows the phase, and the review message says it was promoted.
    w.wait(30, "the parent showing Promoted", |w| {
        let p = w.message(&format!("gaffer:parent:{t}"))?;
        let r = w.message(&review.key())?;
        (p.all_text().contains("Phase: *Promoted*") && r.all_text().contains("Promoted"))
            .then_some(())
    });
    w.wait(30, "every milestone posted", |w| {
        let n = w.snapshot().task(&t)?.progress.as_ref()?.milestones.len();
        let posted = w
            .fake
            .messages()
            .iter()
            .filter(|m| m.key().starts_with("gaffer:m:"))
            .count();
        (posted == n).then_some(())
    });
    assert_thread_once_in_order(&w, &t);
    // The links (how to attach, the lab) were posted.
    assert!(
        w.fake
            .messages()
            .iter()
            .any(|m| m.key().starts_with("gaffer:x:links-")
                && m.all_text().contains("builder.lab.example.com"))
    );
}

/// Plays the person through git for the kill test: answers q-001, approves in review.
fn act_by_git(w: &World, t: &TaskRef, done: &mut Vec<&'static str>) {
    let snap = w.snapshot();
    let Some(e) = snap.task(t) else { return };
    let q1 = Qid::new("q-001").unwrap();
    if e.questions.get(&q1).is_some_and(|q| q.decision.is_none()) && !done.contains(&"answer") {
        done.push("answer");
        let path = format!("projects/{}/tasks/{}/answers/q-001.yaml", t.project, t.task);
        let body = format!("choice: HS256\nby: {PERSON}\n");
        commit_as(
            &w.state,
            PERSON,
            &[(path.as_str(), body.as_str())],
            "answer",
        );
    }
    if phase_of(&snap, t) == Some(Phase::InReview) && !done.contains(&"approve") {
        done.push("approve");
        let path = format!("projects/{}/tasks/{}/approvals/ok.yaml", t.project, t.task);
        let body = crate::common::approval_body(PERSON, e.status.as_deref());
        commit_as(
            &w.state,
            PERSON,
            &[(path.as_str(), body.as_str())],
            "approve",
        );
    }
}

#[test]
fn kill_9_of_the_bot_between_posts_neither_repeats_nor_skips() {
    let seed = std::env::var("GAFFER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("slack crash test seed {seed} (set GAFFER_CRASH_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = World::new(None, "2s");
    let t = TaskRef::parse("demo/web-api/jwt").unwrap();
    commit_to_bare(
        &w.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/jwt/task.yaml",
            "title: Implement JWT authentication\n",
        )],
        "task",
    );
    let _reconciler = w.reconciler();
    let mut done = Vec::new();
    // The worst moments: the message is in Slack but the bot has not recorded it. The first
    // post is the thread's parent; later ones are milestones and questions.
    let mut bot: Option<Proc> = None;
    for n in [1, 2 + rng.u64(0..3), 1 + rng.u64(0..4)] {
        w.fake.stall_post(n);
        if bot.is_none() {
            bot = Some(w.bot());
        }
        w.wait(60, "a stalled post", |w| {
            act_by_git(w, &t, &mut done);
            w.fake.is_stalled().then_some(())
        });
        bot.take().unwrap().kill9();
        w.fake.release();
        bot = Some(w.bot());
    }
    let mut bot = bot.unwrap();
    // Then kills at random moments.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.u64(50..400)));
        act_by_git(&w, &t, &mut done);
        bot.kill9();
        bot = w.bot();
    }
    w.wait(90, "Promoted and fully posted", |w| {
        act_by_git(w, &t, &mut done);
        let s = w.snapshot();
        if phase_of(&s, &t) != Some(Phase::Promoted) {
            return None;
        }
        let n = s.task(&t)?.progress.as_ref()?.milestones.len();
        let p = w.message(&format!("gaffer:parent:{t}"))?;
        let posted = w
            .fake
            .messages()
            .iter()
            .filter(|m| m.key().starts_with("gaffer:m:"))
            .count();
        (posted >= n && p.all_text().contains("Promoted")).then_some(())
    });
    assert_thread_once_in_order(&w, &t);
    // The second question was defaulted at its deadline: the message says so and keeps a
    // "Change answer" button, whose form commits a new answer.
    let q2 = w.message("gaffer:q:q-002").unwrap();
    assert!(
        q2.all_text().contains("applied at the deadline"),
        "{}",
        q2.all_text()
    );
    let change = format!("change:{t}:q-002");
    assert!(q2.blocks.to_string().contains(&change));
    let channel = w.channel_id().unwrap();
    w.fake.click(ALLOWED, &channel, &q2.ts, &change);
    let (form_id, form) = w.fake.views().pop().expect("the change form");
    assert_eq!(form["blocks"][1]["element"]["type"], "radio_buttons");
    w.fake
        .submit(ALLOWED, &form_id, &[("choice", "selected:1")]);
    let path = format!("projects/{}/tasks/{}/answers/q-002.yaml", t.project, t.task);
    let body = git(&w.state, &["show", &format!("main:{path}")]);
    assert!(
        body.contains("choice: 1 hour") && body.contains("by: U0ALLOWED"),
        "{body}"
    );
    // slack.yaml catches up with what was posted once posting pauses.
    w.wait(30, "slack.yaml to catch up", |w| {
        let snap = w.snapshot();
        let e = snap.task(&t)?;
        let n = e.progress.as_ref()?.milestones.len() as u32;
        (e.slack.as_ref()?.posted_seq == n).then_some(())
    });
    drop(bot);
    // The crashes did hit the window between posting and recording.
    let log = w.logs();
    assert!(
        log.contains("found the thread's parent posted before a crash"),
        "{log}"
    );
    assert!(log.contains("found a post not yet recorded"), "{log}");
}

/// POSTs `body` with Slack's signature headers; returns (status, body).
fn post(port: u16, path: &str, body: &str, ts: i64, sig: &str) -> (u16, String) {
    post_as(
        port,
        path,
        "application/x-www-form-urlencoded",
        body,
        ts,
        sig,
    )
}

/// [`post`] with another content type.
fn post_as(
    port: u16,
    path: &str,
    content_type: &str,
    body: &str,
    ts: i64,
    sig: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn wait_listening(port: u16, w: &World) {
    w.wait(30, "the events endpoint", |_| {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
}

#[test]
fn the_events_api_accepts_only_fresh_correctly_signed_requests() {
    let w = World::new(Some(SCRIPT), "1h");
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let port = free_port();
    let _bot = w.events_bot(port, secret);
    let v = gaffer::chat::slack::verify::Verifier::new(secret.as_bytes().to_vec());
    let now = jiff::Timestamp::now().as_second();
    let status = "token=x&team_id=T0GAFFER&channel_id=C0GENERAL&user_id=U0ALLOWED&command=%2Fopencode&text=status+demo%2Fweb-api&trigger_id=t1&response_url=https%3A%2F%2Fx";
    let (code, body) = post(
        port,
        "/slack/commands",
        status,
        now,
        &v.sign(now, status.as_bytes()),
    );
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["response_type"], "ephemeral");
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("No tasks in demo/web-api"),
        "{reply}"
    );
    // The same request again: a replay.
    let (code, _) = post(
        port,
        "/slack/commands",
        status,
        now,
        &v.sign(now, status.as_bytes()),
    );
    assert_eq!(code, 401);
    // A bad signature.
    let other = format!("{status}&x=1");
    let (code, _) = post(
        port,
        "/slack/commands",
        &other,
        now,
        &v.sign(now, status.as_bytes()),
    );
    assert_eq!(code, 401);
    // Correctly signed, but 10 minutes old.
    let old = now - 600;
    let (code, _) = post(
        port,
        "/slack/commands",
        &other,
        old,
        &v.sign(old, other.as_bytes()),
    );
    assert_eq!(code, 401);
    // A stranger's signed approval click over the Events API commits nothing.
    let task = TaskRef::parse("demo/web-api/jwt").unwrap();
    commit_to_bare(
        &w.state,
        "main",
        &[("projects/demo/web-api/tasks/jwt/task.yaml", "title: JWT\n")],
        "task",
    );
    let payload = serde_json::json!({"type": "block_actions", "team": {"id": "T0GAFFER"},
        "user": {"id": STRANGER}, "api_app_id": "A0", "trigger_id": "t2",
        "container": {"type": "message", "message_ts": "1.0", "channel_id": "C0GENERAL"},
        "channel": {"id": "C0GENERAL"},
        "actions": [{"type": "button", "action_id": format!("approve:{task}")}]});
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let head = git(&w.state, &["rev-parse", "main"]);
    let now = jiff::Timestamp::now().as_second();
    let (code, body) = post(
        port,
        "/slack/interactive",
        &form,
        now,
        &v.sign(now, form.as_bytes()),
    );
    assert_eq!(code, 200, "{body}");
    // Nothing committed for the click. The bot may record the new task's thread
    // (`slack.yaml`) meanwhile: that is its own file, not a decision.
    let range = format!("{head}..main");
    let changed = git(&w.state, &["log", "--format=", "--name-only", &range]);
    assert!(
        changed
            .lines()
            .all(|f| f.is_empty() || f.ends_with("/slack.yaml")),
        "nothing committed but the bot's own records: {changed}"
    );
    assert!(
        w.fake
            .ephemerals()
            .iter()
            .any(|(_, u, text)| u == STRANGER && text.contains("not allowed"))
    );
    // An unsigned one is not even looked at.
    let (code, _) = post(port, "/slack/interactive", &form, now, "v0=00");
    assert_eq!(code, 401);

    // Events: a reply in the task's thread becomes a message for its builder; opening the
    // Home tab publishes it.
    let parent = w.wait(60, "the thread", |w| {
        w.message(&format!("gaffer:parent:{task}"))
    });
    let event = |event: Value| {
        serde_json::json!({"token": "x", "team_id": "T0GAFFER", "api_app_id": "A0",
            "type": "event_callback", "event_id": "Ev1", "event_time": 1, "event": event})
        .to_string()
    };
    let reply = event(
        serde_json::json!({"type": "message", "channel": parent.channel,
        "user": ALLOWED, "text": "Please use RS256", "ts": "1700000099.000100",
        "thread_ts": parent.ts}),
    );
    let now = jiff::Timestamp::now().as_second();
    let (code, body) = post_as(
        port,
        "/slack/events",
        "application/json",
        &reply,
        now,
        &v.sign(now, reply.as_bytes()),
    );
    assert_eq!(code, 200, "{body}");
    let path =
        "main:projects/demo/web-api/tasks/jwt/messages/slack-u0allowed-1700000099-000100.yaml";
    let body = w.wait(30, "the message committed", |w| {
        let out = std::process::Command::new("git")
            .args(["show", path])
            .current_dir(&w.state)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert!(
        body.contains("text: Please use RS256") && body.contains("by: U0ALLOWED"),
        "{body}"
    );
    let home = event(
        serde_json::json!({"type": "app_home_opened", "user": ALLOWED,
        "channel": "D0", "tab": "home"}),
    );
    let now = jiff::Timestamp::now().as_second();
    let (code, _) = post_as(
        port,
        "/slack/events",
        "application/json",
        &home,
        now,
        &v.sign(now, home.as_bytes()),
    );
    assert_eq!(code, 200);
    let (_, view) = w.wait(30, "the Home tab", |w| w.fake.home(ALLOWED));
    assert!(view.to_string().contains("demo/web-api"), "{view}");
}

#[test]
fn a_signed_request_replayed_after_the_bot_restarts_is_refused() {
    let w = World::new(Some(SCRIPT), "1h");
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let port = free_port();
    let bot = w.events_bot(port, secret);
    let v = gaffer::chat::slack::verify::Verifier::new(secret.as_bytes().to_vec());
    let now = jiff::Timestamp::now().as_second();
    let status = "token=x&team_id=T0GAFFER&channel_id=C0GENERAL&user_id=U0ALLOWED&command=%2Fopencode&text=status&trigger_id=t1&response_url=https%3A%2F%2Fx";
    let sig = v.sign(now, status.as_bytes());
    let (code, body) = post(port, "/slack/commands", status, now, &sig);
    assert_eq!(code, 200, "{body}");
    drop(bot);
    // Captured, and sent again once the bot is back: refused, within the five minutes.
    let port = free_port();
    let _bot = w.events_bot(port, secret);
    let (code, _) = post(port, "/slack/commands", status, now, &sig);
    assert_eq!(code, 401, "a replay across a restart was accepted");
}

#[test]
fn slacks_own_request_bodies_are_read_and_unparseable_signed_ones_refused() {
    let w = World::new(Some(SCRIPT), "1h");
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let port = free_port();
    let _bot = w.events_bot(port, secret);
    let v = gaffer::chat::slack::verify::Verifier::new(secret.as_bytes().to_vec());
    let send = |path: &str, ct: &str, body: &str| {
        let now = jiff::Timestamp::now().as_second();
        post_as(port, path, ct, body, now, &v.sign(now, body.as_bytes()))
    };
    let text = |name: &str| String::from_utf8(crate::common::real_payload("slack", name)).unwrap();
    const JSON: &str = "application/json";
    const FORM: &str = "application/x-www-form-urlencoded";
    // Slack's URL check gets its challenge back.
    let (code, body) = send(
        "/slack/events",
        JSON,
        &text("bolt-python_url_verification.json"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
        "{body}"
    );
    // Events, a slash command and an interaction as Slack's SDKs publish them are read.
    for name in [
        "bolt-python_app_mention.json",
        "bolt-python_message.json",
        "java-slack-sdk_AppMentionPayload.json",
    ] {
        let (code, body) = send("/slack/events", JSON, &text(name));
        assert_eq!(code, 200, "{name}: {body}");
    }
    let (code, body) = send(
        "/slack/commands",
        FORM,
        text("bolt-python_slash_command.form").trim_end(),
    );
    assert_eq!(code, 200, "{body}");
    let (code, _) = send("/slack/commands", FORM, "token=random&ssl_check=1");
    assert_eq!(code, 200);
    let interaction: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &text("bolt-python_view_closed.json"))
        .finish();
    let (code, body) = send("/slack/interactive", FORM, &interaction);
    assert_eq!(code, 200, "{body}");
    // Signed, but not what Slack sends: refused and counted, not acknowledged.
    for (path, ct, body, want) in [
        ("/slack/events", JSON, "{not json", 400),
        ("/slack/events", FORM, "type=event_callback", 415),
        ("/slack/interactive", FORM, "payload=%7Bnope", 400),
        ("/slack/interactive", FORM, "other=1", 400),
        ("/slack/commands", JSON, "{}", 415),
        ("/slack/commands", FORM, "token=x&text=hi", 400),
    ] {
        let (code, text) = send(path, ct, body);
        assert_eq!(code, want, "{path} {ct} {body}: {text}");
    }
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    for line in [
        "gaffer_slack_requests_refused_total{reason=\"json\"} 2",
        "gaffer_slack_requests_refused_total{reason=\"content_type\"} 2",
        "gaffer_slack_requests_refused_total{reason=\"no_payload\"} 1",
        "gaffer_slack_requests_refused_total{reason=\"no_command\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

/// A planned task: the planner writes a spec, a revision on request, then builds it.
const PLANNED: &str = r##"plan:
  - write: {path: "specs/spec-{{task}}/SPEC.md", content: "# Spec v1: tokens\n"}
  - done: spec written
revise:
  - write: {path: "specs/spec-{{task}}/SPEC.md", content: "# Spec v2: tokens and refresh tokens\n"}
  - done: spec revised
steps:
  - write: {path: "web-api/app/fixed-{{task}}.txt", content: "built from the spec\n"}
  - done: built what the spec says
fix:
  - write: {path: "web-api/app/fixed-{{task}}.txt", content: "fixed\n"}
  - done: fixed
"##;

#[test]
fn a_plan_is_revised_on_request_and_approved_from_its_thread() {
    let w = World::new(Some(PLANNED), "1h");
    let _reconciler = w.reconciler();
    let _bot = w.bot();
    let t = TaskRef::parse("demo/web-api/tokens").unwrap();
    commit_as(
        &w.state,
        PERSON,
        &[(
            "projects/demo/web-api/tasks/tokens/task.yaml",
            "title: Token lifetimes\nplan: {mode: quick}\n",
        )],
        "a task planned first",
    );
    let v1 = w.wait(60, "plan v1 in the thread", |w| {
        w.message("gaffer:x:plan-v1")
    });
    let blocks = v1.blocks.to_string();
    assert!(blocks.contains(&format!("plan:{t}:1")), "{blocks}");
    assert!(
        blocks.contains("projects/demo/web-api/tasks/tokens/plan/specs/spec-tokens/SPEC.md"),
        "{blocks}"
    );
    let channel = w.channel_id().unwrap();

    // A stranger's click decides nothing.
    w.fake
        .click(STRANGER, &channel, &v1.ts, &format!("plan:{t}:1"));
    // "Request changes…": a form, whose text is committed naming version 1.
    w.fake
        .click(ALLOWED, &channel, &v1.ts, &format!("planchg:{t}:1"));
    let (form_id, form) = w.fake.views().pop().expect("the changes form");
    assert_eq!(form["callback_id"], "gaffer_plan_changes");
    let ack = w
        .fake
        .submit(ALLOWED, &form_id, &[("text", "Add refresh tokens too.")]);
    assert!(ack.is_null(), "{ack}");
    let v2 = w.wait(60, "plan v2 in the thread", |w| {
        w.message("gaffer:x:plan-v2")
    });
    w.wait(30, "v1 shown superseded", |w| {
        w.message("gaffer:x:plan-v1")
            .filter(|m| m.all_text().contains("Superseded by v2"))
    });
    let snap = w.snapshot();
    let entry = snap.task(&t).unwrap();
    let asked: Vec<_> = entry
        .approvals
        .values()
        .filter(|a| a.changes.is_some())
        .collect();
    assert_eq!(asked.len(), 1, "one request, none from the stranger");
    assert_eq!(
        (
            asked[0].by.as_str(),
            asked[0].plan,
            asked[0].changes.as_deref()
        ),
        (ALLOWED, Some(1), Some("Add refresh tokens too."))
    );
    assert_eq!(
        entry.plan_docs["specs/spec-tokens/SPEC.md"],
        "# Spec v2: tokens and refresh tokens\n"
    );

    // "Approve plan" on v2: the build starts; review and promote as usual.
    w.fake
        .click(ALLOWED, &channel, &v2.ts, &format!("plan:{t}:2"));
    let review = w.wait(90, "the review message", |w| {
        w.fake
            .messages()
            .into_iter()
            .find(|m| m.key().starts_with("gaffer:x:review-"))
    });
    w.fake
        .click(ALLOWED, &channel, &review.ts, &format!("approve:{t}"));
    w.wait(60, "Promoted", |w| {
        (phase_of(&w.snapshot(), &t) == Some(Phase::Promoted)).then_some(())
    });
    let plan = w.snapshot().task(&t).unwrap().plan.clone().unwrap();
    let approved = plan.approved.unwrap();
    assert_eq!((approved.version, approved.by.as_str()), (2, ALLOWED));
    w.wait(30, "v2 shown approved", |w| {
        w.message("gaffer:x:plan-v2")
            .filter(|m| m.all_text().contains("Approved by"))
    });
}

/// A full plan: PRD, architecture, epics with three stories; each story builds in a step.
const FULL: &str = r###"plan:
  - write: {path: "planning-artifacts/prd.md", content: "# PRD: tokens\n"}
  - done: PRD written
  - write: {path: "planning-artifacts/architecture.md", content: "# Architecture: one token service\n"}
  - done: architecture written
  - write:
      path: "planning-artifacts/epics.md"
      content: "## Epic 1: Tokens\n### Story 1.1: Issue tokens\nAs a user I get a token.\n### Story 1.2: Verify tokens\nAs a service I check one.\n## Epic 2: Admin\n### Story 2.1: Revoke tokens\nAs an admin I revoke one.\n"
  - done: epics written
steps:
  - write: {path: "web-api/app/fixed-{{task}}.txt", content: "built\n"}
  - done: story built
fix:
  - write: {path: "web-api/app/fixed-{{task}}.txt", content: "fixed\n"}
  - done: fixed
"###;

#[test]
fn a_full_plans_stories_get_their_own_threads_and_are_built_in_order() {
    let w = World::new(Some(FULL), "1h");
    let _reconciler = w.reconciler();
    let _bot = w.bot();
    let t = TaskRef::parse("demo/web-api/tokens").unwrap();
    commit_as(
        &w.state,
        PERSON,
        &[(
            "projects/demo/web-api/tasks/tokens/task.yaml",
            "title: Token service\nplan: {mode: full}\n",
        )],
        "a task planned in full",
    );
    // PRD, architecture and epics are three versions; the third waits for approval.
    let v3 = w.wait(60, "plan v3 in the thread", |w| {
        w.message("gaffer:x:plan-v3")
    });
    let channel = w.channel_id().unwrap();
    w.fake
        .click(ALLOWED, &channel, &v3.ts, &format!("plan:{t}:3"));
    let stories: Vec<TaskRef> = ["1-1", "1-2", "2-1"]
        .iter()
        .map(|n| TaskRef::parse(&format!("demo/web-api/tokens-{n}")).unwrap())
        .collect();
    let mut done: Vec<Vec<&'static str>> = vec![Vec::new(); stories.len()];
    w.wait(120, "the parent promoted", |w| {
        for (s, d) in stories.iter().zip(done.iter_mut()) {
            act_by_git(w, s, d);
        }
        (phase_of(&w.snapshot(), &t) == Some(Phase::Promoted)).then_some(())
    });
    let snap = w.snapshot();
    // Built in order: each story started only once the one before it was promoted.
    let at = |s: &TaskRef, text: &str| {
        snap.task(s)
            .unwrap()
            .progress
            .as_ref()
            .unwrap()
            .milestones
            .iter()
            .find(|m| m.text.starts_with(text))
            .unwrap_or_else(|| panic!("{s}: no milestone {text:?}"))
            .at
    };
    for pair in stories.windows(2) {
        assert!(
            at(&pair[0], "InReview → Promoted") <= at(&pair[1], "Queued → Preparing"),
            "{} started before {} was promoted",
            pair[1],
            pair[0]
        );
    }
    // Each story has its own thread, which names the task it is a story of.
    for (s, n) in stories.iter().zip(["1.1", "1.2", "2.1"]) {
        let parent = w
            .message(&format!("gaffer:parent:{s}"))
            .unwrap_or_else(|| panic!("no thread for {s}"));
        assert!(
            parent.all_text().contains(&format!("story {n} of tokens")),
            "{}",
            parent.all_text()
        );
    }
    // …and links to the parent's thread.
    let top = w.message(&format!("gaffer:parent:{t}")).unwrap();
    let link = format!(
        "<https://slack.com/archives/{}/p{}|tokens>",
        top.channel,
        top.ts.replace('.', "")
    );
    w.wait(30, "the stories' threads linking to the parent's", |w| {
        stories
            .iter()
            .all(|s| {
                w.message(&format!("gaffer:parent:{s}"))
                    .is_some_and(|m| m.blocks.to_string().contains(&link))
            })
            .then_some(())
    });
    w.wait(30, "the parent's thread showing Promoted", |w| {
        let p = w.message(&format!("gaffer:parent:{t}"))?;
        p.all_text().contains("Phase: *Promoted*").then_some(())
    });
}
