//! Running: the fold over the builder's events, its failure branches, and when to look again.

use super::*;
use crate::reconcile::task::run::{Look, next_look};

struct Case {
    name: &'static str,
    given: fn(&mut World),
    then_phase: Phase,
    action: Option<Action>,
    check: fn(&World, &Plan),
}

fn ev(e: &[AgentEvent]) -> Vec<AgentEvent> {
    e.to_vec()
}

fn table() -> Vec<Case> {
    vec![
        Case {
            name: "no session recorded: prepare again",
            given: |w| {
                w.edit_status(|s| s.agent = None);
            },
            then_phase: Phase::Preparing,
            action: Some(requeue(0)),
            check: |_, p| assert_eq!(p.status.reason.as_deref(), Some("NoSession")),
        },
        Case {
            name: "a completed todo is a milestone and the cursor moves on",
            given: |w| {
                w.poll(ev(&[AgentEvent::Todo("write the handler".into())]));
            },
            then_phase: Phase::Running,
            action: None,
            check: |_, p| {
                assert_eq!(milestones(p), ["✔ write the handler"]);
                assert_eq!(p.status.effects.agent_cursor, 10);
            },
        },
        Case {
            name: "an edit is checkpointed and the commit recorded",
            given: |w| {
                *w.ws.dirty.lock().unwrap() = true;
                w.poll(ev(&[AgentEvent::Edited(vec!["app.py".into()])]));
            },
            then_phase: Phase::Running,
            action: None,
            check: |w, p| {
                assert!(w.ws.called("checkpoint edited app.py"));
                let m = p.new_milestones()[0].clone();
                assert_eq!(m.text, "📝 edited app.py");
                assert_eq!(m.commit, Some("c".repeat(40)));
            },
        },
        Case {
            name: "host_paths_do_not_leak_into_history: absolute tool paths are shown relative to the workspace",
            given: |w| {
                *w.ws.dirty.lock().unwrap() = true;
                w.poll(ev(&[AgentEvent::Edited(vec![
                    "/builders/demo-api/repos/api/app.py".into(),
                    "/home/someone/elsewhere/notes.txt".into(),
                ])]));
            },
            then_phase: Phase::Running,
            action: None,
            check: |w, p| {
                assert!(
                    w.ws.called("checkpoint edited repos/api/app.py, …/notes.txt"),
                    "{:?}",
                    w.ws.calls
                );
                assert_eq!(milestones(p), ["📝 edited repos/api/app.py, …/notes.txt"]);
            },
        },
        Case {
            name: "done with nothing provisional: deploy",
            given: |w| {
                w.poll(ev(&[AgentEvent::Finished("JWT added".into())]));
            },
            then_phase: Phase::Deploying,
            action: Some(requeue(0)),
            check: |w, p| {
                assert!(w.ws.called("checkpoint done"));
                assert!(milestones(p).contains(&"🏁 JWT added".to_string()));
                assert_eq!(p.status.effects.agent_done, None);
            },
        },
        Case {
            name: "done while provisional work waits for its answer: stay",
            given: |w| {
                w.poll(ev(&[
                    asked("que_1", &["RS256 (Recommended)", "HS256"]),
                    AgentEvent::Finished("JWT added".into()),
                ]));
            },
            then_phase: Phase::Running,
            action: None,
            check: |_, p| {
                assert_eq!(p.status.reason.as_deref(), Some("ProvisionalWork"));
                assert_eq!(p.status.effects.agent_done.as_deref(), Some("JWT added"));
            },
        },
        Case {
            name: "a turn that ends without DONE gets a nudge",
            given: |w| {
                w.poll(ev(&[AgentEvent::TurnEnded("I think it works".into())]));
            },
            then_phase: Phase::Running,
            action: None,
            check: |w, p| {
                assert_eq!(w.agent.sent_ids(), ["nudge-10"]);
                assert!(
                    w.agent
                        .sent_text("nudge")
                        .contains("DONE: <one-line summary>")
                );
                assert_eq!(p.status.effects.nudges, 1);
                assert_eq!(milestones(p), ["💬 turn ended: I think it works"]);
            },
        },
        Case {
            name: "a third stop without DONE fails the task",
            given: |w| {
                w.edit_status(|s| s.effects.nudges = 2);
                w.poll(ev(&[AgentEvent::TurnEnded("still nothing".into())]));
            },
            then_phase: Phase::Failed,
            action: Some(Action::await_change()),
            check: |w, p| {
                assert_eq!(p.status.reason.as_deref(), Some("AgentStopped"));
                assert_eq!(p.status.effects.failed_in, Some(Phase::Running));
                assert!(w.agent.sent.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "work after a nudge resets the count",
            given: |w| {
                w.edit_status(|s| s.effects.nudges = 2);
                w.poll(ev(&[AgentEvent::Todo("more".into())]));
            },
            then_phase: Phase::Running,
            action: None,
            check: |_, p| assert_eq!(p.status.effects.nudges, 0),
        },
        Case {
            name: "a transient failure is retried after a pause",
            given: |w| {
                w.poll(ev(&[AgentEvent::Failed {
                    message: "overloaded".into(),
                    retryable: true,
                }]));
            },
            then_phase: Phase::Running,
            // The poll interval (5 s) comes before the retry (10 s).
            action: Some(requeue(5)),
            check: |_, p| {
                assert_eq!(p.status.attempts, 1);
                assert_eq!(
                    p.status.effects.retry_at,
                    Some(p.now + jiff::SignedDuration::from_secs(10))
                );
                assert_eq!(milestones(p), ["⚠ overloaded (retrying in 10s)"]);
            },
        },
        Case {
            name: "a transient failure after three retries fails the task",
            given: |w| {
                w.edit_status(|s| s.attempts = 3);
                w.poll(ev(&[AgentEvent::Failed {
                    message: "overloaded".into(),
                    retryable: true,
                }]));
            },
            then_phase: Phase::Failed,
            action: Some(Action::await_change()),
            check: |_, p| assert_eq!(p.status.reason.as_deref(), Some("AgentFailed")),
        },
        Case {
            name: "a failure that retrying cannot help fails the task at once",
            given: |w| {
                w.poll(ev(&[AgentEvent::Failed {
                    message: "bad key".into(),
                    retryable: false,
                }]));
            },
            then_phase: Phase::Failed,
            action: Some(Action::await_change()),
            check: |_, p| {
                assert_eq!(p.status.message.as_deref(), Some("bad key"));
                assert_eq!(p.status.effects.failed_in, Some(Phase::Running));
            },
        },
        Case {
            name: "a retry whose pause is over prompts the builder once",
            given: |w| {
                let at = w.now - jiff::SignedDuration::from_secs(1);
                w.edit_status(|s| {
                    s.attempts = 1;
                    s.effects.retry_at = Some(at);
                });
            },
            then_phase: Phase::Running,
            action: None,
            check: |w, p| {
                assert_eq!(w.agent.sent_ids(), ["retry-1"]);
                assert_eq!(p.status.effects.retry_at, None);
                assert!(
                    p.status
                        .agent
                        .as_ref()
                        .unwrap()
                        .prompts_sent
                        .contains(&"retry-1".to_string())
                );
            },
        },
        Case {
            name: "a runtime restarted under a turn: the builder is told once",
            given: |w| {
                w.agent.polls.lock().unwrap().push_back(Polled {
                    events: vec![],
                    cursor: 4,
                    waiting: false,
                    interrupted: Some("msg_9".into()),
                    usage: Vec::new(),
                });
                w.edit_status(|s| {
                    s.agent
                        .as_mut()
                        .unwrap()
                        .prompts_sent
                        .push("resume-msg_8".into())
                });
            },
            then_phase: Phase::Running,
            action: None,
            check: |w, p| {
                assert_eq!(w.agent.sent_ids(), ["resume-msg_9"]);
                assert_eq!(milestones(p).len(), 1);
            },
        },
        Case {
            name: "a question while going on at once: provisional branch, answer relayed next",
            given: |w| {
                w.poll(ev(&[asked("que_1", &["RS256 (Recommended)", "HS256"])]));
            },
            then_phase: Phase::Running,
            action: Some(requeue(0)),
            check: |w, p| {
                assert!(w.ws.called("branch_off gaffer-provisional/jwt/q-001"));
                let q = &p.questions[&crate::names::Qid::new("q-001").unwrap()];
                assert_eq!(q.state, crate::state::status::QuestionState::Provisional);
                assert_eq!(q.recommended, "RS256 (Recommended)");
                assert_eq!(
                    q.provisional_branch.as_deref(),
                    Some("gaffer-provisional/jwt/q-001")
                );
                assert!(milestones(p)[0].starts_with("❓ q-001: Which algorithm?"));
                assert!(
                    milestones(p)[0].contains("deadline Wed 25 Nov 12:00 GMT"),
                    "{:?}",
                    milestones(p)
                );
            },
        },
        Case {
            name: "a question that waits for a person: AwaitingAnswer, looked at within 30 s",
            given: |w| {
                w.file(
                    "gaffer.yaml",
                    &GAFFER.replace("continue: immediately", "continue: at-deadline"),
                );
                w.poll(ev(&[asked("que_1", &["A", "B"])]));
            },
            then_phase: Phase::AwaitingAnswer,
            action: Some(requeue(30)),
            check: |w, p| {
                assert!(!w.ws.called("branch_off"));
                assert_eq!(p.status.reason.as_deref(), Some("QuestionAsked"));
            },
        },
        Case {
            name: "a permission request recommends the project's default reply",
            given: |w| {
                let mut q = asked("per_1", &["reject", "always", "once"]);
                if let AgentEvent::Question(a) = &mut q {
                    a.kind = AskKind::Permission;
                }
                w.poll(vec![q]);
            },
            then_phase: Phase::Running,
            action: Some(requeue(0)),
            check: |_, p| {
                let q = p.questions.values().next().unwrap();
                assert_eq!(q.recommended, "once");
                assert_eq!(q.options[0].label, "once");
            },
        },
        Case {
            name: "three questions at once also become one document",
            given: |w| {
                w.poll(ev(&[
                    asked("a", &["A"]),
                    asked("b", &["B"]),
                    asked("c", &["C"]),
                ]));
            },
            then_phase: Phase::Running,
            action: Some(requeue(0)),
            check: |_, p| {
                assert_eq!(p.docs.len(), 1);
                assert_eq!(p.docs[0].0.as_str(), "batch-001");
                assert_eq!(p.status.effects.in_doc.len(), 3);
                assert!(
                    milestones(p)
                        .iter()
                        .any(|m| m.starts_with("🗒 questions/batch-001.md: 3 questions"))
                );
            },
        },
        Case {
            name: "quiet for the summary interval: a summary milestone",
            given: |w| {
                let since = w.now - jiff::SignedDuration::from_mins(91);
                w.edit_status(|s| s.phase_since = Some(since));
            },
            then_phase: Phase::Running,
            action: None,
            check: |_, p| {
                // And quiet for longer than the stall watchdog's 15 minutes: stalled.
                assert_eq!(
                    milestones(p),
                    ["🧾 files changed: api/app.py", "⏳ no progress for 91 min"]
                );
            },
        },
    ]
}

#[tokio::test]
async fn running_folds_the_builders_events() {
    for case in table() {
        let mut w = World::new(Phase::Running);
        (case.given)(&mut w);
        let (action, plan) = w
            .step()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(plan.phase(), case.then_phase, "{}", case.name);
        if let Some(a) = case.action {
            assert_eq!(action, a, "{}", case.name);
        }
        (case.check)(&w, &plan);
    }
}

#[test]
fn when_to_look_again() {
    let s = Duration::from_secs;
    let base = Look {
        relay_now: false,
        blocked: false,
        wakes: false,
        poll_interval: s(5),
        until_deadline: None,
        until_summary: s(3600),
        until_retry: None,
        until_stall: None,
    };
    let rows: Vec<(&str, Look, Duration)> = vec![
        ("a polled runtime: the poll interval", base.clone(), s(5)),
        (
            "an answer to relay: at once",
            Look {
                relay_now: true,
                ..base.clone()
            },
            s(0),
        ),
        (
            "a runtime that wakes the task: a 30 s safety net",
            Look {
                wakes: true,
                poll_interval: s(1),
                ..base.clone()
            },
            s(30),
        ),
        (
            "blocked on a question: 30 s",
            Look {
                blocked: true,
                ..base.clone()
            },
            s(30),
        ),
        (
            "blocked, the deadline sooner",
            Look {
                blocked: true,
                until_deadline: Some(s(7)),
                ..base.clone()
            },
            s(7),
        ),
        (
            "working on, a deadline sooner than the poll",
            Look {
                until_deadline: Some(s(2)),
                ..base.clone()
            },
            s(2),
        ),
        (
            "the summary due: at least a second",
            Look {
                until_summary: s(0),
                ..base.clone()
            },
            s(1),
        ),
        (
            "the stall watchdog due sooner",
            Look {
                until_stall: Some(s(4)),
                ..base.clone()
            },
            s(4),
        ),
        (
            "a retry due sooner",
            Look {
                until_retry: Some(s(3)),
                ..base.clone()
            },
            s(3),
        ),
    ];
    for (name, look, want) in rows {
        assert_eq!(next_look(&look), want, "{name}");
    }
}
