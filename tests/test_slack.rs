//! The Slack bot's Web API client (slack-morphism, the production client) against an
//! in-process fake Slack: every message kind's Block Kit is accepted by the typed client and
//! arrives as built.

use gaffer::chat::slack::api::SlackApi;
use gaffer::chat::slack::blocks;
use gaffer::names::{Qid, TaskRef};
use gaffer::state::status::{Link, Phase};
use serde_json::Value;

use crate::common::slack::{BOT_TOKEN, FakeSlack};

/// Drops nulls, so JSON built by hand compares equal to the client's serialisation.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_posts_each_message_kind_as_built_and_a_bad_token_fails_loudly() {
    let fake = tokio::task::spawn_blocking(FakeSlack::start).await.unwrap();
    let bad = SlackApi::new("xoxb-wrong", Some(&fake.api_url())).unwrap();
    let e = bad.auth_test().await.unwrap_err().to_string();
    assert!(e.contains("auth.test") && e.contains("invalid_auth"), "{e}");

    let api = SlackApi::new(BOT_TOKEN, Some(&fake.api_url())).unwrap();
    fake.add_channel("C0PROJ", "ai-dev-proj-api-service");
    assert_eq!(api.auth_test().await.unwrap(), "U0GAFFERBOT");
    let t = TaskRef::parse("ai-dev/proj-api-service/jwt-auth").unwrap();
    let parent = blocks::thread_parent(
        &t,
        "Implement JWT authentication",
        Phase::Running,
        None,
        &[],
        None,
    );
    let ts = api.post("C0PROJ", None, &parent).await.unwrap();
    let approve = blocks::approve(
        &t,
        &[Link {
            name: "pr:domain-apis".into(),
            url: "https://github.com/example/domain-apis/pull/42".into(),
        }],
        "review-1",
    );
    let reply = api.post("C0PROJ", Some(&ts), &approve).await.unwrap();
    assert_ne!(reply, ts);
    let updated = blocks::thread_parent(
        &t,
        "Implement JWT authentication",
        Phase::InReview,
        None,
        &[],
        None,
    );
    api.update("C0PROJ", &ts, &updated).await.unwrap();
    let batch = blocks::question_batch(
        &t,
        "https://example.com/doc.md",
        &[Qid::new("q-001").unwrap()],
    );
    api.post("C0PROJ", Some(&ts), &batch).await.unwrap();
    // The other kinds: the typed client must accept their Block Kit too.
    let q: gaffer::state::status::Question = gaffer::state::yaml::parse(
        b"text: Which algorithm?\nheader: Signing\noptions: [{label: RS256 (Recommended), description: keys}, {label: HS256}]\nmultiple: false\ncustom: true\nrecommended: RS256 (Recommended)\naskedAt: 2026-11-25T10:00:00Z\nstate: provisional\n",
    )
    .unwrap();
    let qid = Qid::new("q-001").unwrap();
    let mut others = vec![
        blocks::question(&t, &qid, &q, "Wed 25 Nov 15:30 GMT"),
        blocks::links(&[Link {
            name: "lab".into(),
            url: "https://lab.example.com".into(),
        }]),
    ];
    let mut decided = q.clone();
    decided.decision = Some(gaffer::state::status::Decision {
        choice: vec!["RS256 (Recommended)".into()],
        decided_by: gaffer::state::status::DecidedBy::TimeoutDefault,
        by: None,
        at: jiff::Timestamp::UNIX_EPOCH,
        note: Some("n".into()),
    });
    others.push(blocks::decided(&t, &qid, &decided));
    for m in &others {
        api.post("C0PROJ", Some(&ts), m).await.unwrap();
    }

    let calls = fake.calls();
    let posts: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "chat.postMessage" || c.method == "chat.update")
        .collect();
    assert_eq!(posts.len(), 4 + others.len(), "{calls:#?}");
    let sent: Vec<&Value> = [&parent, &approve, &updated, &batch]
        .into_iter()
        .chain(others.iter())
        .collect();
    for (call, sent) in posts.iter().zip(sent) {
        assert_eq!(
            strip_nulls(&call.body["blocks"]),
            sent["blocks"],
            "{}",
            call.method
        );
        assert_eq!(call.body["text"], sent["text"]);
        assert_eq!(call.body["channel"], "C0PROJ");
    }
    assert_eq!(posts[0].body.get("thread_ts"), None);
    assert_eq!(posts[1].body["thread_ts"], Value::String(ts.clone()));
    assert_eq!(posts[2].method, "chat.update");
    assert_eq!(posts[2].body["ts"], Value::String(ts));
    tokio::task::spawn_blocking(move || drop(fake))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_channels_are_found_or_created_and_joined() {
    let fake = tokio::task::spawn_blocking(FakeSlack::start).await.unwrap();
    fake.add_channel("C0EXISTING", "ai-dev-proj-api-service");
    let api = SlackApi::new(BOT_TOKEN, Some(&fake.api_url())).unwrap();
    assert_eq!(
        api.ensure_channel("ai-dev-proj-api-service").await.unwrap(),
        "C0EXISTING"
    );
    let made = api.ensure_channel("ai-dev-web").await.unwrap();
    assert_eq!(
        api.ensure_channel("ai-dev-web").await.unwrap(),
        made,
        "found, not made twice"
    );
    assert_eq!(
        fake.channels()
            .iter()
            .filter(|(_, n)| n == "ai-dev-web")
            .count(),
        1
    );
    let calls = fake.calls();
    let creates = calls
        .iter()
        .filter(|c| c.method == "conversations.create")
        .count();
    let joins: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "conversations.join")
        .map(|c| c.body["channel"].as_str().unwrap())
        .collect();
    assert_eq!(creates, 1);
    assert_eq!(joins, ["C0EXISTING", made.as_str(), made.as_str()]);
    tokio::task::spawn_blocking(move || drop(fake))
        .await
        .unwrap();
}
