//! Steering from the phone: replies in a task's thread (the fake Slack delivering real
//! Events API `message` events over Socket Mode to the real `gaffer slack`), words that act
//! on the task, messages delivered to the builder once (the scripted builder here, the real
//! OpenCode in `a_thread_reply_reaches_the_real_opencode_session_once_across_kill_9`), and
//! the Home tab.

use gaffer::names::TaskRef;
use gaffer::state::status::Phase;

use crate::common::{Proc, commit_to_bare, git};
use crate::test_slack_bot::{ALLOWED, STRANGER, World, phase_of};

/// The builder asks a question and waits for it (1 h), then fails.
const SCRIPT: &str = r#"steps:
  - todo: Read the existing API code
  - question:
      text: Should I use RS256 or HS256 for JWT signing?
      header: JWT signing
      options:
        - {label: RS256 (Recommended)}
        - {label: HS256}
  - fail: {message: "the model refused the request"}
"#;

fn task_yaml(w: &World, t: &TaskRef) -> String {
    git(
        &w.state,
        &[
            "show",
            &format!("main:projects/{}/tasks/{}/task.yaml", t.project, t.task),
        ],
    )
}

/// The ephemeral texts `user` got so far.
fn told(w: &World, user: &str) -> Vec<String> {
    w.fake
        .ephemerals()
        .into_iter()
        .filter(|(_, u, _)| u == user)
        .map(|(_, _, t)| t)
        .collect()
}

fn wait_told(w: &World, user: &str, what: &str) -> String {
    w.wait(30, &format!("{user} told {what:?}"), |w| {
        told(w, user).into_iter().find(|t| t.contains(what))
    })
}

/// Waits until `task.yaml` of `t` contains `what`; returns it.
fn wait_yaml(w: &World, t: &TaskRef, what: &str) -> String {
    w.wait(30, &format!("task.yaml with {what:?}"), |w| {
        let y = task_yaml(w, t);
        y.contains(what).then_some(y)
    })
}

fn wait_phase(w: &World, t: &TaskRef, p: Phase) {
    w.wait(60, &format!("{t} {p}"), |w| {
        (phase_of(&w.snapshot(), t) == Some(p)).then_some(())
    });
}

/// A world whose task `demo/web-api/jwt` (its `task.yaml` is `spec`) runs [`SCRIPT`] with a
/// reconciler and the bot; returns it once the task's thread exists, with its parent message.
fn started(spec: &str) -> (World, TaskRef, crate::common::slack::Message, [Proc; 2]) {
    let w = World::new(Some(SCRIPT), "1h");
    let t = TaskRef::parse("demo/web-api/jwt").unwrap();
    commit_to_bare(
        &w.state,
        "main",
        &[("projects/demo/web-api/tasks/jwt/task.yaml", spec)],
        "task",
    );
    let procs = [w.reconciler(), w.bot()];
    let parent = w.wait(60, "the thread", |w| {
        w.message(&format!("gaffer:parent:{t}"))
    });
    (w, t, parent, procs)
}

#[test]
fn words_in_the_thread_commit_the_spec_change_and_the_lifecycle_follows() {
    let (w, t, parent, _procs) =
        started("# started by hand\ntitle: Implement JWT authentication\npriority: high\n");
    let channel = parent.channel.clone();
    let thread = parent.ts.clone();
    wait_phase(&w, &t, Phase::AwaitingAnswer);
    // The question's notice mentions the people to push, once, in the thread.
    let notice = w.wait(60, "the question's notice", |w| {
        w.fake.messages().into_iter().find(|m| {
            m.text
                .starts_with("<@U0ALLOWED> ❓ question in demo/web-api · jwt: Should I use RS256")
        })
    });
    assert_eq!(notice.thread_ts.as_deref(), Some(thread.as_str()));
    assert!(notice.text.contains("answer by"), "{}", notice.text);

    // The Home tab, opened: what waits (the question, with its buttons) and the project.
    w.fake.open_home(ALLOWED);
    let (n0, home) = w.wait(30, "the Home tab", |w| w.fake.home(ALLOWED));
    let text = home.to_string();
    assert!(text.contains("Should I use RS256 or HS256"), "{text}");
    assert!(text.contains(&format!("answer:{t}:q-001:0")), "{text}");
    assert!(text.contains("*AwaitingAnswer*"), "{text}");

    // A stranger's word does nothing and is told so, only them.
    let before = git(&w.state, &["rev-parse", "main"]);
    w.fake.reply(STRANGER, &channel, &thread, "stop");
    wait_told(&w, STRANGER, "only the people listed");
    w.fake
        .reply(STRANGER, &channel, &thread, "please push to main");
    assert_eq!(
        git(&w.state, &["rev-parse", "main"]),
        before,
        "nothing committed"
    );

    // `status`: an ephemeral summary.
    w.fake.reply(ALLOWED, &channel, &thread, "status");
    let status = wait_told(&w, ALLOWED, "Phase: *AwaitingAnswer*");
    assert!(status.contains("q-001"), "{status}");

    // `pause`: suspend: true, the rest of the person's file kept, attributed to them.
    w.fake
        .reply(ALLOWED, &channel, &thread, "<@U0GAFFERBOT> Pause");
    let y = wait_yaml(&w, &t, "suspend: true");
    assert!(y.starts_with("# started by hand\n"), "{y}");
    assert!(
        y.contains("suspend: true") && y.contains("priority: high"),
        "{y}"
    );
    let log = git(
        &w.state,
        &[
            "log",
            "-1",
            "--format=%an|%ce|%B",
            "main",
            "--",
            "projects/demo/web-api/tasks/jwt/task.yaml",
        ],
    );
    assert!(
        log.starts_with("Alice Example|slack-bot@gaffer.invalid|"),
        "{log}"
    );
    assert!(log.contains("Slack-User: U0ALLOWED"), "{log}");
    w.wait(10, "the confirmation in the thread", |w| {
        w.fake.messages().into_iter().find(|m| {
            m.thread_ts.as_deref() == Some(thread.as_str()) && m.text.contains("pause asked by")
        })
    });
    wait_phase(&w, &t, Phase::Suspended);
    w.fake.reply(ALLOWED, &channel, &thread, "pause");
    wait_told(&w, ALLOWED, "already paused");
    // The Home tab followed the change (throttled, within seconds).
    w.wait(30, "the Home tab refreshed", |w| {
        let (n, v) = w.fake.home(ALLOWED)?;
        (n > n0 && v.to_string().contains("*Suspended*")).then_some(())
    });

    // A message while paused is kept for the builder, and delivered when it runs again.
    w.fake.reply(
        ALLOWED,
        &channel,
        &thread,
        "Use RS256 and keep the key in a ConfigMap",
    );
    wait_told(&w, ALLOWED, "is not working now (Suspended)");
    w.fake.reply(ALLOWED, &channel, &thread, "resume");
    wait_yaml(&w, &t, "suspend: false");
    wait_phase(&w, &t, Phase::AwaitingAnswer);
    let snap = w.wait(60, "the message delivered", |w| {
        let s = w.snapshot();
        let delivered = s
            .task(&t)?
            .progress
            .as_ref()?
            .milestones
            .iter()
            .any(|m| m.text == "💬 U0ALLOWED: Use RS256 and keep the key in a ConfigMap");
        delivered.then_some(s)
    });
    let e = snap.task(&t).unwrap();
    assert_eq!(e.messages.len(), 1);
    let by_builder = e
        .status
        .as_ref()
        .unwrap()
        .agent
        .as_ref()
        .unwrap()
        .prompts_sent
        .iter()
        .filter(|p| p.starts_with("message-slack-u0allowed-"))
        .count();
    assert_eq!(by_builder, 1);

    // `retry` on a task that has not failed: nothing to retry.
    w.fake.reply(ALLOWED, &channel, &thread, "retry");
    wait_told(&w, ALLOWED, "nothing to retry");

    // Answer the question: the builder goes on and fails; `retry` retries it.
    let q = w.wait(30, "q-001", |w| w.message("gaffer:q:q-001"));
    w.fake
        .click(ALLOWED, &channel, &q.ts, &format!("answer:{t}:q-001:0"));
    wait_phase(&w, &t, Phase::Failed);
    w.fake.reply(ALLOWED, &channel, &thread, "hello?");
    wait_told(&w, ALLOWED, "say `retry` first");
    w.fake.reply(ALLOWED, &channel, &thread, "retry");
    wait_yaml(&w, &t, "retry: 1");
    w.wait(60, "the retry taken", |w| {
        let s = w.snapshot();
        let st = s.task(&t)?.status.clone()?;
        (st.observed_retry == 1).then_some(())
    });

    // `stop`: cancel: true, and the task is Cancelled; it takes no more messages.
    w.fake.reply(ALLOWED, &channel, &thread, "stop");
    wait_yaml(&w, &t, "cancel: true");
    wait_phase(&w, &t, Phase::Cancelled);
    w.fake.reply(ALLOWED, &channel, &thread, "one more thing");
    wait_told(&w, ALLOWED, "the task is Cancelled");
    let snap = w.snapshot();
    assert_eq!(
        snap.task(&t).unwrap().messages.len(),
        1,
        "nothing more committed"
    );
}

/// `gaffer slack` (Socket Mode) on `lab`'s state repository, talking to `fake`.
pub(crate) fn lab_bot(
    lab: &crate::test_opencode::Lab,
    fake: &crate::common::slack::FakeSlack,
) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lab.tmp.path().join("bot.log"))
        .unwrap();
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .args(["slack", "--state", lab.state.to_str().unwrap()])
            .arg("--data-dir")
            .arg(lab.tmp.path().join("bot"))
            .env_remove("SLACK_SIGNING_SECRET")
            .env("SLACK_BOT_TOKEN", crate::common::slack::BOT_TOKEN)
            .env("SLACK_APP_TOKEN", crate::common::slack::APP_TOKEN)
            .env("GAFFER_SLACK_API_URL", fake.api_url())
            .env("RUST_LOG", "info")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

pub(crate) fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_thread_reply_reaches_the_real_opencode_session_once_across_kill_9() {
    use crate::common::llm::Step;
    use crate::test_opencode::{
        Lab, fix_steps, milestones, phase_of, status_of, user_messages_with,
    };

    let lab = Lab::new(&["web-api"]);
    let settings = git(&lab.state, &["show", "main:gaffer.yaml"])
        .replace("slack_users: []", &format!("slack_users: [{ALLOWED}]"));
    commit_to_bare(
        &lab.state,
        "main",
        &[("gaffer.yaml", &settings)],
        "slack users",
    );
    let key = "Token fix from the phone";
    let mut steps = fix_steps("delta");
    // The builder is mid-turn (its model request held) when the reply comes.
    steps.insert(
        1,
        Step::tool(
            "write",
            serde_json::json!({"filePath": "repos/web-api/app/notes-delta.txt", "content": "noted\n"}),
        )
        .held(),
    );
    lab.add_task("web-api", "delta", key, steps);
    let fake = crate::common::slack::FakeSlack::start();
    let bot = lab_bot(&lab, &fake);
    let daemon = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let parent = wait_for(60, "the thread", || {
        fake.messages()
            .into_iter()
            .find(|m| m.key() == "gaffer:parent:demo/web-api/delta")
    });
    // The reconciler is down when the reply is committed.
    drop(daemon);
    fake.reply(
        STRANGER,
        &parent.channel,
        &parent.ts,
        "Also drop the database",
    );
    let text = "Also log the token id when a token expires";
    fake.reply(ALLOWED, &parent.channel, &parent.ts, text);
    let dir = "projects/demo/web-api/tasks/delta/messages";
    let committed = wait_for(30, "the message committed", || {
        let out = git(
            &lab.state,
            &["ls-tree", "--name-only", "main", &format!("{dir}/")],
        );
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(
        committed.lines().count(),
        1,
        "the stranger's reply is not committed: {committed}"
    );
    assert!(committed.contains("slack-u0allowed-"), "{committed}");
    assert!(
        fake.ephemerals()
            .iter()
            .any(|(_, u, t)| u == STRANGER && t.contains("only the people listed"))
    );
    // And the bot dies too, before anything was delivered.
    bot.kill9();

    // A reconciler that dies right after sending it, before recording that it did…
    let mut crashing = lab.daemon_env(&[("GAFFER_CRASH_AT", "message:sent")]);
    crashing.wait_exit(120);
    let snap = lab.snapshot();
    let st = status_of(&snap, "demo/web-api/delta").unwrap();
    assert!(
        st.effects.messages.is_empty(),
        "not recorded before the crash"
    );
    // …and one that goes on: it sends nothing twice.
    let _daemon = lab.daemon();
    let _bot = lab_bot(&lab, &fake);
    lab.llm.release();
    let snap = lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, "demo/web-api/delta") == Some(Phase::Promoted)
    });
    // OpenCode's model saw the message once, in the same session, after the held step.
    assert_eq!(user_messages_with(&lab.llm, key, text), 1);
    assert_eq!(user_messages_with(&lab.llm, key, "# Task: "), 1);
    let first_seen = lab
        .llm
        .log_of(key)
        .iter()
        .position(|l| l.user_texts.iter().any(|u| u.contains(text)))
        .expect("a request with the message");
    assert!(first_seen >= 2, "after the held step");
    let st = status_of(&snap, "demo/web-api/delta").unwrap();
    assert_eq!(
        st.effects.messages.values().collect::<Vec<_>>(),
        ["delivered"]
    );
    let ms = milestones(&snap, "demo/web-api/delta");
    assert_eq!(
        ms.iter()
            .filter(|(_, t, _)| t == &format!("💬 {ALLOWED}: {text}"))
            .count(),
        1,
        "{ms:?}"
    );
    // The thread shows it once too.
    wait_for(60, "the delivery in the thread", || {
        let n = fake
            .messages()
            .iter()
            .filter(|m| m.text.contains(&format!("💬 {ALLOWED}: {text}")))
            .count();
        (n == 1).then_some(())
    });
}

#[test]
fn a_question_in_a_thread_of_its_own_is_linked_and_answered_there() {
    let (w, t, parent, _procs) =
        started("title: Implement JWT authentication\nquestions: {thread: own}\n");
    let own_key = format!("gaffer:own:{t}:q-001");
    let q = w.wait(60, "the question's own thread", |w| w.message(&own_key));
    assert_eq!(q.thread_ts, None, "it starts a thread of its own");
    assert_eq!(q.channel, parent.channel);
    assert!(q.all_text().contains("RS256 or HS256"));
    // The task's thread points to it.
    let pointer = w.wait(30, "the pointer", |w| w.message("gaffer:x:own-q-001"));
    assert_eq!(pointer.thread_ts.as_deref(), Some(parent.ts.as_str()));
    assert!(
        pointer.all_text().contains(&q.ts.replace('.', "")),
        "{}",
        pointer.all_text()
    );
    assert!(
        w.message("gaffer:q:q-001").is_none(),
        "not in the task's thread"
    );
    // Its buttons answer as they do anywhere.
    w.fake
        .click(ALLOWED, &q.channel, &q.ts, &format!("answer:{t}:q-001:1"));
    let body = git(
        &w.state,
        &[
            "show",
            "main:projects/demo/web-api/tasks/jwt/answers/q-001.yaml",
        ],
    );
    assert!(
        body.contains("choice: HS256") && body.contains("by: U0ALLOWED"),
        "{body}"
    );
    w.wait(60, "the decision shown in its own thread", |w| {
        let m = w.message(&own_key)?;
        m.all_text()
            .contains("answered by <@U0ALLOWED>")
            .then_some(())
    });
    wait_phase(&w, &t, Phase::Failed);
    // Posted once each.
    let msgs = w.fake.messages();
    assert_eq!(msgs.iter().filter(|m| m.key() == own_key).count(), 1);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.key() == "gaffer:x:own-q-001")
            .count(),
        1
    );
}

#[test]
fn a_question_asked_at_night_mentions_people_at_nine_on_the_injected_clock() {
    let w = World::new(Some(SCRIPT), "1h");
    // Weekdays 09:00–17:00 in London; the reconciler's clock says Wednesday 22:00.
    let settings = git(&w.state, &["show", "main:gaffer.yaml"]).replace(
        "days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"23:59\"",
        "days: [mon, tue, wed, thu, fri], start: \"09:00\", end: \"17:00\"",
    );
    assert!(settings.contains("start: \"09:00\""), "{settings}");
    let clock = w.tmp.path().join("clock");
    std::fs::write(&clock, "2026-11-25T22:00:00Z").unwrap();
    commit_to_bare(
        &w.state,
        "main",
        &[
            ("gaffer.yaml", &settings),
            (
                "projects/demo/web-api/tasks/jwt/task.yaml",
                "title: Implement JWT authentication\n",
            ),
        ],
        "task",
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gaffer"));
    cmd.args([
        "reconcile",
        "--lab",
        "render-only",
        "--state",
        w.state.to_str().unwrap(),
    ])
    .arg("--data-dir")
    .arg(w.tmp.path().join("data"))
    .arg("--builders")
    .arg(w.tmp.path().join("builders"))
    .arg("--clock-file")
    .arg(&clock)
    .env("GIT_CONFIG_GLOBAL", "/dev/null")
    .stdin(std::process::Stdio::null())
    .stdout(w.log("daemon.log"))
    .stderr(w.log("daemon.log"));
    let _reconciler = Proc(cmd.spawn().unwrap());
    let _bot = w.bot();
    let t = TaskRef::parse("demo/web-api/jwt").unwrap();
    // The question is posted at once; its notice is held for the morning.
    w.wait(60, "q-001 in the thread", |w| w.message("gaffer:q:q-001"));
    let snap = w.wait(30, "the held notice", |w| {
        let s = w.snapshot();
        let held = s
            .task(&t)?
            .status
            .as_ref()?
            .notices
            .iter()
            .any(|n| n.key == "question:q-001" && !n.released);
        held.then_some(s)
    });
    let n = &snap.task(&t).unwrap().status.as_ref().unwrap().notices[0];
    assert_eq!(n.due.to_string(), "2026-11-26T09:00:00Z");
    let mentions = |w: &World| {
        w.fake
            .messages()
            .into_iter()
            .filter(|m| m.text.starts_with("<@U0ALLOWED> ❓ question"))
            .count()
    };
    // The bot has posted everything the state holds (the question and its milestones); no
    // mention among them.
    w.wait(30, "the thread caught up", |w| {
        let s = w.snapshot();
        let n = s.task(&t)?.progress.as_ref()?.milestones.len();
        let posted = w
            .fake
            .messages()
            .iter()
            .filter(|m| m.key().starts_with("gaffer:m:"))
            .count();
        (posted == n).then_some(())
    });
    assert_eq!(mentions(&w), 0, "nobody woken at night");
    // 09:00 on the injected clock: pushed, once.
    std::fs::write(&clock, "2026-11-26T09:00:00Z").unwrap();
    w.wait(60, "the mention at nine", |w| {
        (mentions(w) == 1).then_some(())
    });
    w.wait(30, "the notice recorded as posted", |w| {
        let s = w.snapshot();
        let rec = s.task(&t)?.slack.as_ref()?.clone();
        rec.posted
            .contains_key("notice-question:q-001")
            .then_some(())
    });
    assert_eq!(mentions(&w), 1, "once");
}
