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
