//! The question rules: who may answer, what counts as an answer, deadlines, and what a
//! decision does to the provisional work.

use super::*;
use crate::names::Qid;
use crate::state::effects::Applied;
use crate::state::status::{DecidedBy, Decision, Question, QuestionKind, QuestionState};

fn q1() -> Qid {
    Qid::new("q-001").unwrap()
}

/// Question q-001 (RS256 recommended), going on provisionally unless `open`.
fn question(w: &mut World, state: QuestionState) {
    let provisional = state != QuestionState::Open;
    let q = Question {
        kind: QuestionKind::Question,
        text: "Which algorithm?".into(),
        header: "Algorithm".into(),
        recommended: "RS256".into(),
        options: ["RS256", "HS256"]
            .iter()
            .map(|l| QuestionOption {
                label: l.to_string(),
                description: String::new(),
            })
            .collect(),
        multiple: false,
        custom: false,
        asked_at: w.now - jiff::SignedDuration::from_mins(30),
        deadline: Some(w.now + jiff::SignedDuration::from_mins(90)),
        state,
        request_id: Some("que_1".into()),
        decision: None,
        point: per_repo_point(),
        provisional_branch: provisional.then(|| "gaffer/jwt/q-001".into()),
        parent_branch: provisional.then(|| "gaffer/jwt".into()),
        problems: vec![],
    };
    let y = crate::state::yaml::to_string(&q).unwrap();
    w.task_file("questions/q-001.yaml", &y);
    if provisional {
        // The builder went on with the recommended option.
        w.edit_status(|s| {
            s.effects.relayed.insert(q1(), vec!["RS256".into()]);
        });
    }
}

fn per_repo_point() -> BTreeMap<RepoName, String> {
    BTreeMap::from([(RepoName::new("api").unwrap(), "p".repeat(40))])
}

fn answer(w: &mut World, choice: &str, author: &str, committer: &str, by: Option<&str>) {
    let by = by.map(|b| format!("by: {b}\n")).unwrap_or_default();
    w.task_file("answers/q-001.yaml", &format!("choice: {choice}\n{by}"));
    w.by("answers/q-001.yaml", author, committer);
}

/// Alice (a listed author) answers q-001 with `choice`, in her own commit.
fn alice_answers(w: &mut World, choice: &str) {
    answer(w, choice, "alice@example.com", "alice@example.com", None);
}

fn q(p: &Plan) -> &Question {
    &p.questions[&q1()]
}

struct Case {
    name: &'static str,
    given: fn(&mut World),
    check: fn(&World, &Plan),
}

fn table() -> Vec<Case> {
    vec![
        Case {
            name: "an answer by a listed author decides the open question and reaches the builder",
            given: |w| {
                question(w, QuestionState::Open);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
            },
            check: |w, p| {
                assert_eq!(q(p).state, QuestionState::Answered);
                let d = q(p).decision.as_ref().unwrap();
                assert_eq!(
                    (d.by.as_deref(), d.decided_by),
                    (Some("alice@example.com"), DecidedBy::Human)
                );
                assert_eq!(
                    *w.agent.answers.lock().unwrap(),
                    [("que_1".to_string(), vec!["HS256".to_string()])]
                );
                assert_eq!(p.status.effects.relayed[&q1()], ["HS256"]);
                assert!(
                    milestones(p)
                        .contains(&"✅ q-001 answered HS256 by alice@example.com".to_string())
                );
            },
        },
        Case {
            name: "an answer committed by someone unlisted is noted on the question, nothing else",
            given: |w| {
                question(w, QuestionState::Open);
                answer(
                    w,
                    "HS256",
                    "mallory@example.com",
                    "mallory@example.com",
                    None,
                );
            },
            check: |w, p| {
                assert_eq!(q(p).state, QuestionState::Open);
                assert!(q(p).problems[0].contains(
                    "mallory@example.com ignored: not listed in gaffer.yaml authors.answers"
                ));
                assert!(w.agent.answers.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "an unsigned answer under a listed author's email is ignored: anyone can write an email",
            given: |w| {
                question(w, QuestionState::Open);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
                w.signed_by("answers/q-001.yaml", None);
            },
            check: |w, p| {
                assert!(q(p).decision.is_none());
                assert!(
                    q(p).problems[0].contains("not signed by a key listed for them"),
                    "{:?}",
                    q(p).problems
                );
                assert!(w.agent.answers.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "an answer signed by another person's key is ignored",
            given: |w| {
                question(w, QuestionState::Open);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
                w.signed_by("answers/q-001.yaml", Some("bob@example.com"));
            },
            check: |_, p| {
                assert!(q(p).decision.is_none());
                assert!(q(p).problems[0].contains("signed by bob@example.com's key"));
            },
        },
        Case {
            name: "with authors.accept_unsigned an unsigned answer by a listed author counts",
            given: |w| {
                w.file(
                    "gaffer.yaml",
                    &GAFFER.replace(
                        "reviewers: [bob]}",
                        "reviewers: [bob], accept_unsigned: true}",
                    ),
                );
                question(w, QuestionState::Open);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
                w.signed_by("answers/q-001.yaml", None);
            },
            check: |_, p| {
                assert_eq!(
                    q(p).decision.as_ref().unwrap().by.as_deref(),
                    Some("alice@example.com")
                );
            },
        },
        Case {
            name: "the Slack bot answers for a listed Slack user",
            given: |w| {
                question(w, QuestionState::Open);
                answer(
                    w,
                    "RS256",
                    "Alice <alice@example.com>",
                    "slack-bot@gaffer.invalid",
                    Some("U1"),
                );
            },
            check: |_, p| {
                assert_eq!(q(p).state, QuestionState::Answered);
                assert_eq!(q(p).decision.as_ref().unwrap().by.as_deref(), Some("U1"));
            },
        },
        Case {
            name: "the Slack bot naming nobody is refused",
            given: |w| {
                question(w, QuestionState::Open);
                answer(
                    w,
                    "RS256",
                    "x@example.com",
                    "slack-bot@gaffer.invalid",
                    None,
                );
            },
            check: |_, p| {
                assert_eq!(q(p).state, QuestionState::Open);
                assert!(q(p).problems[0].contains("names no Slack user"));
            },
        },
        Case {
            name: "the Slack bot for an unlisted Slack user is refused",
            given: |w| {
                question(w, QuestionState::Open);
                answer(
                    w,
                    "RS256",
                    "x@example.com",
                    "slack-bot@gaffer.invalid",
                    Some("U9"),
                );
            },
            check: |_, p| {
                assert!(q(p).problems[0].contains("Slack user U9 ignored"));
            },
        },
        Case {
            name: "delegates come from authors.delegates: a configured bot may answer for its people",
            given: |w| {
                w.file("gaffer.yaml", &GAFFER.replace(
                    "reviewers: [bob]}",
                    "reviewers: [bob], delegates: [{committer: n8n@example.com, for: [carol]}]}",
                ));
                question(w, QuestionState::Open);
                answer(
                    w,
                    "HS256",
                    "n8n@example.com",
                    "n8n@example.com",
                    Some("carol"),
                );
            },
            check: |_, p| {
                assert_eq!(q(p).decision.as_ref().unwrap().by.as_deref(), Some("carol"));
            },
        },
        Case {
            name: "with delegates configured, the Slack bot is no longer one by default",
            given: |w| {
                w.file("gaffer.yaml", &GAFFER.replace(
                    "reviewers: [bob]}",
                    "reviewers: [bob], delegates: [{committer: n8n@example.com, for: [carol]}]}",
                ));
                question(w, QuestionState::Open);
                answer(
                    w,
                    "HS256",
                    "slack-bot@gaffer.invalid",
                    "slack-bot@gaffer.invalid",
                    Some("U1"),
                );
            },
            check: |_, p| {
                assert!(q(p).decision.is_none());
                assert!(q(p).problems[0].contains("not listed in gaffer.yaml authors.answers"));
            },
        },
        Case {
            name: "an answer that is not an option is ignored, and said so",
            given: |w| {
                question(w, QuestionState::Open);
                answer(w, "ES256", "alice@example.com", "alice@example.com", None);
            },
            check: |_, p| {
                assert!(q(p).decision.is_none());
                assert_eq!(
                    q(p).problems,
                    ["answer \"ES256\" ignored: not one of the options"]
                );
            },
        },
        Case {
            name: "a passed deadline applies the recommended option as the default",
            given: |w| {
                question(w, QuestionState::Open);
                let past = w.now - jiff::SignedDuration::from_mins(1);
                let y = w.files["projects/demo/api/tasks/jwt/questions/q-001.yaml"].clone();
                let mut qq: Question = crate::state::yaml::parse(y.as_bytes()).unwrap();
                qq.deadline = Some(past);
                w.task_file(
                    "questions/q-001.yaml",
                    &crate::state::yaml::to_string(&qq).unwrap(),
                );
            },
            check: |w, p| {
                assert_eq!(
                    q(p).state,
                    QuestionState::Defaulted,
                    "{:?} {:?}",
                    q(p),
                    w.ws.calls
                );
                assert_eq!(
                    q(p).decision.as_ref().unwrap().decided_by,
                    DecidedBy::TimeoutDefault
                );
                // Work goes on from here on a provisional branch, so a later answer can set it aside.
                assert!(w.ws.called("branch_off gaffer-provisional/jwt/q-001"));
                assert_eq!(
                    *w.agent.answers.lock().unwrap(),
                    [("que_1".to_string(), vec!["RS256".to_string()])]
                );
            },
        },
        Case {
            name: "an answer that matches what the builder went on with confirms the work",
            given: |w| {
                question(w, QuestionState::Provisional);
                answer(w, "RS256", "alice@example.com", "alice@example.com", None);
            },
            check: |w, p| {
                assert!(w.ws.called("confirm gaffer/jwt gaffer/jwt/q-001"));
                assert_eq!(
                    p.status.effects.applied[&q1()],
                    Applied::Confirmed(vec!["RS256".into()])
                );
                // Heard once: no second answer to the builder.
                assert!(w.agent.answers.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "a different answer sets the work aside and tells the builder",
            given: |w| {
                question(w, QuestionState::Provisional);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
                w.edit_status(|s| s.effects.agent_done = Some("done early".into()));
            },
            check: |w, p| {
                assert_eq!(q(p).state, QuestionState::Overridden);
                assert_eq!(*w.agent.calls.lock().unwrap(), ["interrupt"]);
                assert!(w.ws.called("set_aside gaffer/jwt gaffer/jwt/q-001"));
                let text = w.agent.sent_text("override-q-001-");
                assert!(
                    text.starts_with(
                        "A person answered your earlier question \"Which algorithm?\": HS256."
                    ),
                    "{text}"
                );
                assert!(text.contains("(api aaaaaaaaaaaa)"), "{text}");
                assert_eq!(
                    p.status.effects.applied[&q1()],
                    Applied::SetAside(vec!["HS256".into()])
                );
                assert_eq!(p.status.effects.agent_done, None);
            },
        },
        Case {
            name: "applying_a_different_answer_is_safe_to_repeat: told before a crash, the builder is not stopped or set aside again",
            given: |w| {
                question(w, QuestionState::Provisional);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
                // The step ran up to the prompt; its status commit never landed.
                w.agent
                    .delivered
                    .lock()
                    .unwrap()
                    .push("override-q-001-".into());
            },
            check: |w, p| {
                assert!(w.agent.calls.lock().unwrap().is_empty(), "stopped again");
                assert!(
                    !w.ws.called("set_aside"),
                    "set aside again: {:?}",
                    w.ws.calls
                );
                assert!(w.agent.sent.lock().unwrap().is_empty(), "told twice");
                assert_eq!(
                    p.status.effects.applied[&q1()],
                    Applied::SetAside(vec!["HS256".into()])
                );
                let sent = &p.status.agent.as_ref().unwrap().prompts_sent;
                assert!(
                    sent.iter().any(|s| s.starts_with("override-q-001-")),
                    "{sent:?}"
                );
                assert!(
                    milestones(p).iter().any(|m| m.starts_with("↩ q-001")),
                    "{:?}",
                    milestones(p)
                );
            },
        },
        Case {
            name: "a decision already applied is not applied again",
            given: |w| {
                question(w, QuestionState::Provisional);
                answer(w, "HS256", "alice@example.com", "alice@example.com", None);
                w.edit_status(|s| {
                    s.effects
                        .applied
                        .insert(q1(), Applied::SetAside(vec!["HS256".into()]));
                });
                let y = w.files["projects/demo/api/tasks/jwt/questions/q-001.yaml"].clone();
                let mut qq: Question = crate::state::yaml::parse(y.as_bytes()).unwrap();
                qq.state = QuestionState::Overridden;
                qq.decision = Some(Decision {
                    choice: vec!["HS256".into()],
                    decided_by: DecidedBy::Human,
                    by: Some("alice@example.com".into()),
                    at: w.now,
                    note: None,
                });
                w.task_file(
                    "questions/q-001.yaml",
                    &crate::state::yaml::to_string(&qq).unwrap(),
                );
            },
            check: |w, _| {
                assert!(!w.ws.called("set_aside"));
                assert!(w.agent.sent.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "a question document as generated is nobody's answer",
            given: |w| {
                question(w, QuestionState::Open);
                w.task_file(
                    "questions/batch-001.md",
                    "# Questions\n\n## q-001: Which algorithm?\n\n- [x] HS256\n",
                );
                w.by(
                    "questions/batch-001.md",
                    "reconciler@gaffer.invalid",
                    "reconciler@gaffer.invalid",
                );
            },
            check: |_, p| {
                assert!(q(p).decision.is_none());
                assert!(q(p).problems.is_empty(), "{:?}", q(p).problems);
            },
        },
    ]
}

#[tokio::test]
async fn question_rules() {
    assert_eq!(
        crate::store::Identity::reconciler().email,
        "reconciler@gaffer.invalid"
    );
    for case in table() {
        let mut w = World::new(Phase::Running);
        (case.given)(&mut w);
        let (_, plan) = w
            .step()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        (case.check)(&w, &plan);
    }
}

#[tokio::test]
async fn a_late_answer_after_the_default_sends_the_task_back_once() {
    let mut w = World::new(Phase::InReview);
    question(&mut w, QuestionState::Defaulted);
    let y = w.files["projects/demo/api/tasks/jwt/questions/q-001.yaml"].clone();
    let mut qq: Question = crate::state::yaml::parse(y.as_bytes()).unwrap();
    qq.decision = Some(Decision {
        choice: vec!["RS256".into()],
        decided_by: DecidedBy::TimeoutDefault,
        by: None,
        at: w.now,
        note: None,
    });
    w.task_file(
        "questions/q-001.yaml",
        &crate::state::yaml::to_string(&qq).unwrap(),
    );
    alice_answers(&mut w, "HS256");
    let (action, mut plan) = w.step().await.unwrap();
    assert_eq!((plan.phase(), action), (Phase::Running, requeue(0)));
    assert_eq!(plan.status.reason.as_deref(), Some("AnswerChanged"));
    // Once: back in review with the same answer, it does not bounce again.
    plan.status.phase = Phase::InReview;
    w.apply(&mut plan);
    let (_, plan) = w.step().await.unwrap();
    assert_ne!(plan.status.reason.as_deref(), Some("AnswerChanged"));
}

/// A decision taken is recorded at once; the builder (which can take seconds to answer a
/// poll when it is busy) is looked at on the next round, right after.
#[tokio::test]
async fn a_decision_is_recorded_before_the_builder_is_polled() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut w = World::new(Phase::AwaitingAnswer);
    question(&mut w, QuestionState::Open);
    alice_answers(&mut w, "HS256");
    let (action, mut plan) = w.step().await.unwrap();
    assert_eq!(action, requeue(0));
    assert_eq!(q(&plan).state, QuestionState::Answered);
    assert_eq!(
        *w.agent.answers.lock().unwrap(),
        [("que_1".to_string(), vec!["HS256".to_string()])]
    );
    assert_eq!(w.agent.polls_started.load(SeqCst), 0, "not polled yet");
    // The next round has nothing new to decide: it polls the builder.
    w.apply(&mut plan);
    let (action, _) = w.step().await.unwrap();
    assert_ne!(action, requeue(0));
    assert_eq!(w.agent.polls_started.load(SeqCst), 1);
    assert_eq!(w.agent.answers.lock().unwrap().len(), 1, "answered once");
}

/// A person's decision arriving while the builder is slow to answer a poll does not wait
/// for it: the poll (it only reads) is given up and the task goes round again, decisions
/// first. Other changes (the bot's own records, say) leave the poll alone.
#[tokio::test]
async fn a_decision_arriving_during_a_slow_poll_is_not_kept_waiting() {
    use std::sync::atomic::Ordering::SeqCst;
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut w = World::new(Phase::AwaitingAnswer);
    w.agent = Arc::new(FakeAgent {
        poll_gate: Some(gate.clone()),
        ..FakeAgent::default()
    });
    question(&mut w, QuestionState::Open);
    let (before, authors_before) = (w.files.clone(), w.authors.clone());
    alice_answers(&mut w, "HS256");
    let (after, authors_after) = (w.files.clone(), w.authors.clone());
    let mut ctx = w.ctx();
    let store = Arc::new(MemoryStore::default());
    *store.files.lock().unwrap() = before.clone();
    *store.authors.lock().unwrap() = authors_before;
    ctx.store = store.clone();

    let mut reconcile = Box::pin(w.step_in(&ctx));
    let polling = async {
        while w.agent.polls_started.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        r = &mut reconcile => panic!("returned before its poll was answered (ok: {})", r.is_ok()),
        () = polling => {}
    }
    // Something else changes: the poll goes on.
    let mut other = before.clone();
    other.insert(
        "projects/demo/api/tasks/jwt/slack.yaml".into(),
        "channel: C1\n".into(),
    );
    *store.files.lock().unwrap() = other;
    ctx.changes.send_modify(|n| *n += 1);
    let still = tokio::time::timeout(Duration::from_millis(200), &mut reconcile).await;
    assert!(still.is_err(), "an unrelated change gave up the poll");
    // Alice's answer lands and is dispatched.
    *store.files.lock().unwrap() = after;
    *store.authors.lock().unwrap() = authors_after;
    ctx.changes.send_modify(|n| *n += 1);
    let (action, plan) = tokio::time::timeout(Duration::from_secs(10), reconcile)
        .await
        .expect("the decision was kept waiting for the builder")
        .unwrap();
    assert_eq!(action, requeue(0), "round again at once");
    assert_eq!(
        q(&plan).state,
        QuestionState::Open,
        "decided on the next round"
    );
    assert!(w.agent.answers.lock().unwrap().is_empty());
}
