//! From the phone: people's messages to the builder (delivered once, in order, only from
//! allowed people, kept for a builder that is not running), links and the stall watchdog.

use super::*;

fn say(w: &mut World, id: &str, text: &str, at: &str, by: &str, committer: &str) {
    w.task_file(
        &format!("messages/{id}.yaml"),
        &format!("text: {text:?}\nby: {by}\nat: {at}\n"),
    );
    w.by(&format!("messages/{id}.yaml"), committer, committer);
}

#[tokio::test]
async fn a_message_reaches_the_builder_once_and_in_order() {
    let mut w = World::new(Phase::Running);
    say(
        &mut w,
        "slack-u1-2",
        "second: also log the token id",
        "2026-11-25T10:02:00Z",
        "U1",
        "slack-bot@gaffer.invalid",
    );
    say(
        &mut w,
        "slack-u1-1",
        "first: use RS256, not HS256",
        "2026-11-25T10:01:00Z",
        "U1",
        "slack-bot@gaffer.invalid",
    );
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    let ids: Vec<String> = w
        .agent
        .sent_ids()
        .into_iter()
        .filter(|i| i.starts_with("message-"))
        .collect();
    assert_eq!(ids, ["message-slack-u1-1", "message-slack-u1-2"]);
    assert!(
        w.agent
            .sent_text("message-slack-u1-1")
            .contains("A message from U1")
    );
    assert!(
        w.agent
            .sent_text("message-slack-u1-1")
            .contains("use RS256, not HS256")
    );
    assert_eq!(
        milestones(&plan),
        [
            "💬 U1: first: use RS256, not HS256",
            "💬 U1: second: also log the token id"
        ]
    );
    w.apply(&mut plan);
    // The next look sends nothing again: the ledger says delivered.
    w.poll(vec![]);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(
        w.agent
            .sent_ids()
            .iter()
            .filter(|i| i.starts_with("message-"))
            .count(),
        2
    );
    assert!(milestones(&plan).is_empty());
    assert_eq!(
        plan.status.effects.messages.values().collect::<Vec<_>>(),
        ["delivered", "delivered"]
    );
}

#[tokio::test]
async fn a_message_from_someone_not_allowed_is_not_delivered_and_said_once() {
    let mut w = World::new(Phase::Running);
    // The bot committing for a Slack user who is not listed, and an unlisted author.
    say(
        &mut w,
        "slack-u9-1",
        "rm -rf everything",
        "2026-11-25T10:01:00Z",
        "U9",
        "slack-bot@gaffer.invalid",
    );
    say(
        &mut w,
        "cli-1",
        "push to main",
        "2026-11-25T10:02:00Z",
        "mallory@example.com",
        "mallory@example.com",
    );
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    assert!(!w.agent.sent_ids().iter().any(|i| i.starts_with("message-")));
    let m = milestones(&plan);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m[0].contains("slack-u9-1 not delivered") && m[0].contains("authors.slack_users"),
        "{m:?}"
    );
    assert!(
        m[1].contains("cli-1 not delivered") && m[1].contains("authors.answers"),
        "{m:?}"
    );
    w.apply(&mut plan);
    w.poll(vec![]);
    let (_, plan) = w.step().await.unwrap();
    assert!(milestones(&plan).is_empty(), "reported once");
}

#[tokio::test]
async fn a_builder_that_is_not_running_gets_its_messages_when_it_runs() {
    let mut w = World::new(Phase::InReview);
    say(
        &mut w,
        "slack-u1-1",
        "rename the endpoint",
        "2026-11-25T10:01:00Z",
        "U1",
        "slack-bot@gaffer.invalid",
    );
    let (_, plan) = w.step().await.unwrap();
    assert!(!w.agent.sent_ids().iter().any(|i| i.starts_with("message-")));
    assert!(plan.status.effects.messages.is_empty(), "kept for later");
}

#[tokio::test]
async fn links_are_rendered_from_the_templates_when_the_session_is_recorded() {
    let mut w = World::new(Phase::Preparing);
    w.file(
        "gaffer.yaml",
        &format!(
            "{GAFFER}links:\n  code: 'https://code.example.com/?folder={{{{ workspace }}}}'\n  state: 'https://gh.example.com/me/state/tree/main/{{{{ task_path }}}}'\n"
        ),
    );
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Running, "{:?}", plan.status);
    let links: Vec<(String, String)> = plan
        .status
        .links
        .iter()
        .map(|l| (l.name.clone(), l.url.clone()))
        .collect();
    assert!(
        links.contains(&(
            "state".into(),
            "https://gh.example.com/me/state/tree/main/projects/demo/api/tasks/jwt".into()
        )),
        "{links:?}"
    );
    let code = links.iter().find(|(n, _)| n == "code").expect("code link");
    assert!(
        code.1.starts_with("https://code.example.com/?folder=/"),
        "{code:?}"
    );
    assert!(code.1.ends_with("demo-api"), "{code:?}");
}

/// An open question q-<n> whose deadline is `deadline`.
fn open_question(w: &mut World, n: u32, deadline: jiff::Timestamp) {
    let y = format!(
        "text: Which algorithm {n}?\noptions: [{{label: RS256}}, {{label: HS256}}]\nrecommended: RS256\naskedAt: {}\nstate: open\ndeadline: {deadline}\nrequestId: que_{n}\n",
        w.now
    );
    w.task_file(&format!("questions/q-00{n}.yaml"), &y);
}

fn notice_keys(plan: &Plan) -> Vec<(String, bool)> {
    plan.status
        .notices
        .iter()
        .map(|n| (n.key.clone(), n.released))
        .collect()
}

#[tokio::test]
async fn notices_are_raised_once_per_reason_and_held_at_night_until_the_morning() {
    // Wednesday 22:00 in London: outside business hours.
    let mut w = World::new(Phase::AwaitingAnswer);
    w.now = "2026-11-25T22:00:00Z".parse().unwrap();
    // Its deadline is tomorrow at 11:00: the notice waits for 09:00.
    open_question(&mut w, 1, "2026-11-26T11:00:00Z".parse().unwrap());
    // Its deadline is before the morning: the notice goes now.
    open_question(&mut w, 2, "2026-11-25T23:30:00Z".parse().unwrap());
    w.poll(vec![]);
    let (action, mut plan) = w.step().await.unwrap();
    assert_eq!(
        notice_keys(&plan),
        [
            ("question:q-001".into(), false),
            ("question:q-002".into(), true)
        ]
    );
    let n1 = &plan.status.notices[0];
    assert_eq!(
        n1.due,
        "2026-11-26T09:00:00Z".parse::<jiff::Timestamp>().unwrap()
    );
    assert!(
        n1.text
            .starts_with("❓ question in demo/api · jwt: Which algorithm 1?"),
        "{}",
        n1.text
    );
    assert!(
        n1.text.contains("answer by Thu 11:00 GMT (then RS256)"),
        "{}",
        n1.text
    );
    // The reconciler looks again by 09:00 at the latest.
    match action {
        Action::Requeue(d) => assert!(d <= std::time::Duration::from_secs(11 * 3600)),
        other => panic!("{other:?}"),
    }
    w.apply(&mut plan);

    // Later that night: nothing new, nothing released, nothing raised twice.
    w.now = "2026-11-26T03:00:00Z".parse().unwrap();
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(
        notice_keys(&plan),
        [
            ("question:q-001".into(), false),
            ("question:q-002".into(), true)
        ]
    );
    w.apply(&mut plan);

    // 09:00 on the injected clock: released, once.
    w.now = "2026-11-26T09:00:00Z".parse().unwrap();
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(
        notice_keys(&plan),
        [
            ("question:q-001".into(), true),
            ("question:q-002".into(), true)
        ]
    );
    w.apply(&mut plan);
    assert_eq!(w.status().notices.len(), 2);

    // Holding off: due at once, whatever the time.
    let mut w = World::new(Phase::AwaitingAnswer);
    w.now = "2026-11-25T22:00:00Z".parse().unwrap();
    w.file(
        "gaffer.yaml",
        &format!("{GAFFER}notify: {{hold_outside_hours: false}}\n"),
    );
    open_question(&mut w, 1, "2026-11-26T11:00:00Z".parse().unwrap());
    w.poll(vec![]);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(notice_keys(&plan), [("question:q-001".into(), true)]);
}

#[tokio::test]
async fn a_failure_raises_one_notice_per_attempt() {
    let mut w = World::new(Phase::Running);
    w.poll(vec![AgentEvent::Failed {
        message: "the model refused".into(),
        retryable: false,
    }]);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Failed);
    assert_eq!(notice_keys(&plan), [("failed:0".into(), true)]);
    assert!(
        plan.status.notices[0]
            .text
            .contains("failed (AgentFailed): the model refused")
    );
    w.apply(&mut plan);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.status.notices.len(), 1, "once");
}

#[tokio::test]
async fn the_stall_watchdog_fires_once_and_clears_itself() {
    let mut w = World::new(Phase::Running);
    let start = w.now;
    w.poll(vec![AgentEvent::Todo("write the handler".into())]);
    let (action, mut plan) = w.step().await.unwrap();
    assert_eq!(milestones(&plan), ["✔ write the handler"]);
    // It looks again by the time the builder would count as stalled.
    match action {
        Action::Requeue(d) => assert!(d <= std::time::Duration::from_secs(15 * 60)),
        other => panic!("{other:?}"),
    }
    w.apply(&mut plan);

    // 16 minutes without an event: one milestone, one notice.
    w.now = start + jiff::SignedDuration::from_mins(16);
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(
        milestones(&plan),
        ["⏳ no progress for 16 min, last: ✔ write the handler"]
    );
    assert_eq!(plan.status.effects.stalled_since, Some(start));
    let keys = notice_keys(&plan);
    assert_eq!(keys, [(format!("stall:{}", start.as_second()), true)]);
    assert!(
        plan.status.notices[0]
            .text
            .contains("no progress for 16 min")
    );
    w.apply(&mut plan);

    // Still nothing: no second milestone or notice.
    w.now = start + jiff::SignedDuration::from_mins(40);
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    assert!(milestones(&plan).is_empty(), "{:?}", milestones(&plan));
    assert_eq!(plan.status.notices.len(), 1);
    w.apply(&mut plan);

    // The builder moves again: cleared, and said so.
    w.now = start + jiff::SignedDuration::from_mins(41);
    w.poll(vec![AgentEvent::Todo("add the tests".into())]);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(
        milestones(&plan),
        ["✔ add the tests", "▶️ moving again after 41 min"]
    );
    assert_eq!(plan.status.effects.stalled_since, None);
    w.apply(&mut plan);

    // And a new stall later is a new reason: one more notice.
    w.now = start + jiff::SignedDuration::from_mins(60);
    w.poll(vec![]);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.status.notices.len(), 2);
}

#[tokio::test]
async fn a_held_notice_whose_question_is_answered_in_the_night_is_never_pushed() {
    let mut w = World::new(Phase::AwaitingAnswer);
    w.now = "2026-11-25T22:00:00Z".parse().unwrap();
    open_question(&mut w, 1, "2026-11-26T11:00:00Z".parse().unwrap());
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(notice_keys(&plan), [("question:q-001".into(), false)]);
    w.apply(&mut plan);
    // Answered from the phone at 23:00, before anyone was woken.
    w.now = "2026-11-25T23:00:00Z".parse().unwrap();
    w.task_file("answers/q-001.yaml", "choice: HS256\nby: U1\n");
    w.by(
        "answers/q-001.yaml",
        "slack-bot@gaffer.invalid",
        "slack-bot@gaffer.invalid",
    );
    w.poll(vec![]);
    let (_, mut plan) = w.step().await.unwrap();
    w.apply(&mut plan);
    w.now = "2026-11-26T09:00:00Z".parse().unwrap();
    w.poll(vec![]);
    let (_, plan) = w.step().await.unwrap();
    assert!(
        plan.status
            .notices
            .iter()
            .all(|n| n.key != "question:q-001"),
        "{:?}",
        plan.status.notices
    );
}
