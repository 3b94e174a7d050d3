//! Gates, the queue and Preparing.

use super::*;

fn nothing(_: &World, _: &Plan) {}

fn table() -> Vec<Case> {
    vec![
        Case {
            name: "a deleted task.yaml cancels the task and stops its builder",
            given: |w| {
                w.files.remove("projects/demo/api/tasks/jwt/task.yaml");
            },
            phase: Phase::Running,
            then_phase: Phase::Cancelled,
            reason: Some("TaskDeleted"),
            action: Action::await_change(),
            check: |w, _| assert_eq!(*w.agent.calls.lock().unwrap(), ["stop"]),
        },
        Case {
            name: "an invalid task.yaml is reported where, and nothing else happens",
            given: |w| {
                w.task_file("task.yaml", "title: x\nprority: high\n");
            },
            phase: Phase::Running,
            then_phase: Phase::Running,
            reason: Some("InvalidSpec"),
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(condition(p, "SpecValid").unwrap().1, "InvalidSpec");
                assert!(p.status.message.as_deref().unwrap().contains("prority"));
                assert!(w.agent.sent.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "a project without project.yaml blocks the task",
            given: |w| {
                w.files.remove("projects/demo/api/project.yaml");
            },
            phase: Phase::Pending,
            then_phase: Phase::Pending,
            reason: None,
            action: Action::await_change(),
            check: |_, p| assert_eq!(condition(p, "ProjectReady").unwrap().1, "NoProject"),
        },
        Case {
            name: "cancel: true stops the builder and keeps the work",
            given: |w| {
                w.task_file("task.yaml", "title: Add JWT\ncancel: true\n");
            },
            phase: Phase::AwaitingAnswer,
            then_phase: Phase::Cancelled,
            reason: Some("Cancelled"),
            action: Action::await_change(),
            check: |w, _| assert_eq!(*w.agent.calls.lock().unwrap(), ["stop"]),
        },
        Case {
            name: "a promoted task stays promoted",
            given: none,
            phase: Phase::Promoted,
            then_phase: Phase::Promoted,
            reason: None,
            action: Action::await_change(),
            check: |w, p| {
                assert!(p.new_milestones().is_empty());
                assert!(w.agent.calls.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "suspend: true remembers where the task was",
            given: |w| {
                w.task_file("task.yaml", "title: Add JWT\nsuspend: true\n");
            },
            phase: Phase::Testing,
            then_phase: Phase::Suspended,
            reason: Some("Suspended"),
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(p.status.effects.suspended_from, Some(Phase::Testing));
                assert_eq!(*w.agent.calls.lock().unwrap(), ["stop"]);
            },
        },
        Case {
            name: "resuming goes through the queue back to the phase it left",
            given: |w| {
                w.edit_status(|s| s.effects.suspended_from = Some(Phase::Deploying));
            },
            phase: Phase::Suspended,
            then_phase: Phase::Queued,
            reason: Some("Resumed"),
            action: requeue(0),
            check: |_, p| assert_eq!(p.status.effects.resume_to, Some(Phase::Deploying)),
        },
        Case {
            name: "a task suspended while preparing resumes to Running",
            given: |w| {
                w.edit_status(|s| s.effects.suspended_from = Some(Phase::Preparing));
            },
            phase: Phase::Suspended,
            then_phase: Phase::Queued,
            reason: Some("Resumed"),
            action: requeue(0),
            check: |_, p| assert_eq!(p.status.effects.resume_to, Some(Phase::Running)),
        },
        Case {
            name: "a raised retry resumes where the task failed, with test attempts reset",
            given: |w| {
                w.task_file("task.yaml", "title: Add JWT\nretry: 1\n");
                w.edit_status(|s| {
                    s.effects.failed_in = Some(Phase::Testing);
                    s.effects.test_attempts = 3;
                    s.attempts = 2;
                });
            },
            phase: Phase::Failed,
            then_phase: Phase::Queued,
            reason: Some("Retry"),
            action: requeue(0),
            check: |_, p| {
                assert_eq!(p.status.effects.resume_to, Some(Phase::Testing));
                assert_eq!(p.status.effects.test_attempts, 0);
                assert_eq!((p.status.attempts, p.status.observed_retry), (0, 1));
            },
        },
        Case {
            name: "a failed task waits for a raised retry",
            given: |w| {
                w.edit_status(|s| s.effects.failed_in = Some(Phase::Testing));
            },
            phase: Phase::Failed,
            then_phase: Phase::Failed,
            reason: None,
            action: Action::await_change(),
            check: |_, p| assert!(p.new_milestones().is_empty()),
        },
        Case {
            name: "a retry of a task that failed before it had a builder starts afresh",
            given: |w| {
                w.task_file("task.yaml", "title: Add JWT\nretry: 1\n");
                w.edit_status(|s| {
                    s.effects.failed_in = Some(Phase::Running);
                    s.agent = None;
                });
            },
            phase: Phase::Failed,
            then_phase: Phase::Queued,
            reason: Some("Retry"),
            action: requeue(0),
            check: |_, p| assert_eq!(p.status.effects.resume_to, None),
        },
        Case {
            name: "a ledger entry that does not parse stops the task with a condition",
            given: |w| {
                let y = w.files[STATUS]
                    .replace("phase: Running", "phase: Running\neffects:\n  nudges: lots");
                w.file(STATUS, &y);
            },
            phase: Phase::Running,
            then_phase: Phase::Running,
            reason: None,
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(
                    condition(p, "EffectsValid"),
                    Some(("False".into(), "InvalidEffects".into()))
                );
                assert!(w.agent.sent.lock().unwrap().is_empty());
                // Kept as it was, so a person can see and fix it.
                assert_eq!(p.status.effects.invalid["nudges"], "lots");
            },
        },
        Case {
            name: "an_unknown_resume_to_stops_the_task_instead_of_skipping_deploy_and_test",
            given: |w| {
                let y = w.files[STATUS].replace(
                    "phase: Preparing",
                    "phase: Preparing\neffects:\n  resumeTo: Reviewing",
                );
                w.file(STATUS, &y);
            },
            phase: Phase::Preparing,
            then_phase: Phase::Preparing,
            reason: None,
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(condition(p, "EffectsValid").unwrap().1, "InvalidEffects");
                assert!(!w.ws.called("prepare"));
            },
        },
        Case {
            name: "a resume target that is a phase but not one to resume to stops the task too",
            given: |w| {
                w.edit_status(|s| s.effects.resume_to = Some(Phase::Promoted));
            },
            phase: Phase::Preparing,
            then_phase: Phase::Preparing,
            reason: None,
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(condition(p, "EffectsValid").unwrap().1, "InvalidEffects");
                assert!(!w.ws.called("prepare"));
            },
        },
        Case {
            name: "a new task is queued",
            given: none,
            phase: Phase::Pending,
            then_phase: Phase::Queued,
            reason: Some("Queued"),
            action: requeue(0),
            check: nothing,
        },
        Case {
            name: "a queued task with a free slot starts preparing",
            given: none,
            phase: Phase::Queued,
            then_phase: Phase::Preparing,
            reason: Some("Starting"),
            action: requeue(0),
            check: nothing,
        },
        Case {
            name: "a queued task waits while a sibling holds the project's slot",
            given: |w| {
                w.file("projects/demo/api/tasks/other/task.yaml", "title: Other\n");
                w.file(
                    "projects/demo/api/tasks/other/status.yaml",
                    "phase: Running\n",
                );
            },
            phase: Phase::Queued,
            then_phase: Phase::Queued,
            reason: Some("ProjectBusy"),
            action: Action::await_change(),
            check: |_, p| assert!(p.status.message.as_deref().unwrap().contains("1/1 active")),
        },
        Case {
            name: "a queued task waits behind a queued sibling of higher priority",
            given: |w| {
                w.file(
                    "projects/demo/api/tasks/other/task.yaml",
                    "title: Other\npriority: high\n",
                );
                w.file(
                    "projects/demo/api/tasks/other/status.yaml",
                    "phase: Queued\n",
                );
            },
            phase: Phase::Queued,
            then_phase: Phase::Queued,
            reason: Some("ProjectBusy"),
            action: Action::await_change(),
            check: |_, p| {
                assert!(
                    p.status
                        .message
                        .as_deref()
                        .unwrap()
                        .contains("1 task(s) ahead")
                )
            },
        },
        Case {
            name: "preparing starts the builder with the task prompt and records how to attach",
            given: none,
            phase: Phase::Preparing,
            then_phase: Phase::Running,
            reason: Some("AgentStarted"),
            action: requeue(0),
            check: |w, p| {
                assert!(w.ws.called("prepare"));
                let prompt = w.agent.sent_text("task");
                assert!(prompt.starts_with("# Task: Add JWT\n"), "{prompt}");
                assert!(
                    prompt.contains("- api: /builders/demo-api/repos/api\n"),
                    "{prompt}"
                );
                assert!(prompt.contains("lab namespace demo-api-lab"), "{prompt}");
                let a = p.status.agent.as_ref().unwrap();
                assert_eq!(
                    (a.session_id.as_deref(), a.host),
                    (Some("ses-1"), Some(HostKind::Tmux))
                );
                assert_eq!(a.attach.as_deref(), Some("tmux attach -t gaffer-demo-api"));
                assert!(p.status.links.iter().any(|l| l.name == "attach"));
                assert_eq!(p.status.repos.len(), 1);
            },
        },
        Case {
            name: "a builder that should be sandboxed where no sandbox runs waits, saying why",
            given: |w| {
                w.file(
                    "projects/demo/api/project.yaml",
                    &PROJECT.replace("agent: {runtime: scripted}", "agent: {runtime: opencode}"),
                );
                w.no_sandbox = Some("bwrap cannot make a sandbox here: No permissions".into());
            },
            phase: Phase::Preparing,
            then_phase: Phase::Preparing,
            reason: None,
            action: Action::await_change(),
            check: |w, p| {
                let c = p
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "AgentReady")
                    .unwrap();
                assert_eq!(c.reason, "SandboxUnavailable");
                assert!(
                    c.message.contains("No permissions")
                        && c.message.contains("agent.sandbox: none")
                );
                assert!(w.agent.sent.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "a credential the project names but gaffer lacks blocks the task, saying which",
            given: |w| {
                w.file(
                    "projects/demo/api/project.yaml",
                    &PROJECT.replace(
                        "agent: {runtime: scripted}",
                        "agent: {runtime: scripted, env_from: [{name: MODEL_KEY, env: GAFFER_TEST_SURELY_UNSET_VAR}]}",
                    ),
                );
            },
            phase: Phase::Preparing,
            then_phase: Phase::Preparing,
            reason: None,
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(condition(p, "AgentReady").unwrap().1, "MissingCredential");
                let c = p
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "AgentReady")
                    .unwrap();
                assert!(
                    c.message.contains("GAFFER_TEST_SURELY_UNSET_VAR"),
                    "{}",
                    c.message
                );
                assert!(w.agent.sent.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "a task resumed to Deploying goes straight back there",
            given: |w| {
                w.edit_status(|s| s.effects.resume_to = Some(Phase::Deploying));
            },
            phase: Phase::Preparing,
            then_phase: Phase::Deploying,
            reason: Some("Resumed"),
            action: requeue(0),
            check: |w, p| {
                assert_eq!(w.agent.sent_ids(), ["task"]);
                assert_eq!(p.status.effects.resume_to, None);
            },
        },
        Case {
            name: "a task resumed to Running is told it was paused",
            given: |w| {
                w.edit_status(|s| s.effects.resume_to = Some(Phase::Running));
            },
            phase: Phase::Preparing,
            then_phase: Phase::Running,
            reason: Some("Resumed"),
            action: requeue(0),
            check: |w, _| {
                assert_eq!(w.agent.sent_ids(), ["task", "resume-1"]);
                assert!(w.agent.sent_text("resume-").contains("You were paused"));
            },
        },
    ]
}

#[tokio::test]
async fn gates_queue_and_preparing() {
    run_table(table()).await;
}

#[tokio::test]
async fn an_old_status_with_tmux_fields_loads_and_is_rewritten_with_the_host() {
    let mut w = World::new(Phase::Preparing);
    let y = "phase: Preparing\nagent:\n  runtime: scripted\n  sessionId: ses-1\n  port: 4096\n  tmux: gaffer-demo-api\n  promptsSent: [task]\n";
    w.file(STATUS, y);
    let (_, mut plan) = w.step().await.unwrap();
    w.apply(&mut plan);
    let written = &w.files[STATUS];
    assert!(written.contains("host: tmux"), "{written}");
    assert!(
        !written.contains("port:") && !written.contains("\n  tmux:"),
        "{written}"
    );
}

/// The queue: priority decides, then the time a task was queued (its status's `phaseSince`,
/// set by the commit that queued it), then the name — in rows where the three disagree.
#[tokio::test]
async fn priority_decides_the_queue_then_queue_time_then_name() {
    // (row, jwt's priority, jwt queued minutes after NOW, sibling, its priority, its minutes,
    // jwt starts)
    let rows = [
        (
            "higher priority beats an earlier queue time and a name first",
            "medium",
            10,
            "aaa",
            "low",
            0,
            true,
        ),
        (
            "lower priority waits though queued first and named first",
            "low",
            0,
            "zzz",
            "medium",
            10,
            false,
        ),
        (
            "equal priority: queued first goes first, whatever the names",
            "high",
            0,
            "aaa",
            "high",
            10,
            true,
        ),
        (
            "equal priority: queued later waits, whatever the names",
            "medium",
            10,
            "zzz",
            "medium",
            0,
            false,
        ),
        (
            "equal priority and time: the name decides (ahead)",
            "medium",
            0,
            "aaa",
            "medium",
            0,
            false,
        ),
        (
            "equal priority and time: the name decides (behind)",
            "medium",
            0,
            "zzz",
            "medium",
            0,
            true,
        ),
    ];
    for (row, prio, mins, sibling, sib_prio, sib_mins, starts) in rows {
        let mut w = World::new(Phase::Queued);
        let now = w.now;
        let at = |m: i64| now.checked_add(jiff::SignedDuration::from_mins(m)).unwrap();
        w.file(
            "projects/demo/api/tasks/jwt/task.yaml",
            &format!("title: Add JWT\npriority: {prio}\n"),
        );
        w.edit_status(|s| s.phase_since = Some(at(mins)));
        w.file(
            &format!("projects/demo/api/tasks/{sibling}/task.yaml"),
            &format!("title: Sibling\npriority: {sib_prio}\n"),
        );
        w.file(
            &format!("projects/demo/api/tasks/{sibling}/status.yaml"),
            &format!("phase: Queued\nphaseSince: {}\n", at(sib_mins)),
        );
        let (_, plan) = w.step().await.unwrap_or_else(|e| panic!("{row}: {e}"));
        let want = if starts {
            Phase::Preparing
        } else {
            Phase::Queued
        };
        assert_eq!(plan.phase(), want, "{row}: {:?}", plan.status.message);
    }
}
