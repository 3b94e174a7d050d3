//! The planning stage: Preparing → Planning → AwaitingPlanApproval → (changes → Planning)
//! → approved → the build, with the plan in its prompt.

use super::*;
use crate::agent::Stage;
use crate::state::planning::{PlanMode, PlanState, PlanStatus};
use crate::state::spec::PermissionAction;

const SPEC: &str = "projects/demo/api/tasks/jwt/plan/specs/spec-jwt/SPEC.md";

fn quick(w: &mut World) {
    w.file("gaffer.yaml", &format!("{GAFFER}plan: {{mode: quick}}\n"));
}

fn plan_status(w: &World) -> PlanStatus {
    let text = &w.files["projects/demo/api/tasks/jwt/plan.yaml"];
    crate::state::yaml::parse(text.as_bytes()).unwrap()
}

/// One reconcile of task `name` of the world's project, nothing written.
async fn step_task(w: &World, name: &str) -> (Action, Plan) {
    let t = TaskRef {
        project: task().project,
        task: crate::names::TaskName::new(name).unwrap(),
    };
    w.step_of(&w.ctx(), &t).await.unwrap()
}

/// One step, applied to the world's files.
async fn step(w: &mut World) -> (Action, Plan) {
    let (action, mut plan) = w.step().await.unwrap();
    w.apply(&mut plan);
    (action, plan)
}

/// A decision file by `by`, committed and signed by them.
fn decide_file(w: &mut World, id: &str, body: &str, by: &str) {
    let rel = format!("approvals/{id}.yaml");
    w.task_file(&rel, body).by(&rel, by, by);
}

/// The planner writes the spec and says it is done.
fn drafted(w: &mut World, spec: &str) {
    w.planner
        .output
        .lock()
        .unwrap()
        .insert("specs/spec-jwt/SPEC.md".into(), spec.into());
    w.poll(vec![AgentEvent::Finished("spec written".into())]);
}

#[tokio::test]
async fn a_quick_plan_is_drafted_revised_on_request_approved_and_then_built() {
    let mut w = World::new(Phase::Preparing);
    quick(&mut w);

    // Preparing starts a planning session that may edit only the plan's folder.
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Planning);
    let (stage, rules) = w.agent.sessions.lock().unwrap()[0].clone();
    assert_eq!(stage, Stage::Plan);
    let last: Vec<_> = rules
        .iter()
        .map(|r| (r.permission.as_str(), r.pattern.as_str(), r.action))
        .collect();
    assert!(
        last.ends_with(&[
            ("edit", "*", PermissionAction::Deny),
            ("edit", "_bmad-output/*", PermissionAction::Allow),
            (
                "edit",
                "/builders/demo-api/_bmad-output/*",
                PermissionAction::Allow
            ),
            (
                "edit",
                "builders/demo-api/_bmad-output/*",
                PermissionAction::Allow
            ),
        ]),
        "{last:?}"
    );
    let prompt = w.agent.sent_text("plan");
    assert!(
        prompt.contains("`bmad-spec`") && prompt.contains("Add JWT"),
        "{prompt}"
    );
    assert_eq!(w.planner.restored.lock().unwrap()[0].0, "jwt");

    // Its turn's end is version 1, committed, waiting for approval.
    drafted(&mut w, "# JWT\nUse HS256.\n");
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    assert_eq!(w.files[SPEC], "# JWT\nUse HS256.\n");
    let st = plan_status(&w);
    assert_eq!((st.version, st.state), (1, PlanState::AwaitingApproval));
    assert!(
        milestones(&plan)
            .iter()
            .any(|m| m.starts_with("📋 plan v1 (spec): spec written"))
    );

    // Nothing to decide yet: it waits, without a commit.
    let (action, plan) = step(&mut w).await;
    assert_eq!(action, Action::await_change());
    assert_eq!(plan.status.reason.as_deref(), Some("AwaitingPlanApproval"));

    // Someone unlisted, and a listed person's unsigned commit, decide nothing; said once.
    decide_file(
        &mut w,
        "plan-1-eve",
        "by: eve@example.com\nplan: 1\n",
        "eve@example.com",
    );
    decide_file(
        &mut w,
        "plan-1-forged",
        "by: alice@example.com\nplan: 1\n",
        "alice@example.com",
    );
    w.signed_by("approvals/plan-1-forged.yaml", None);
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    let said = milestones(&plan);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said[0].contains("plan approval plan-1-eve ignored"),
        "{said:?}"
    );
    assert!(said[1].contains("not signed"), "{said:?}");
    let (_, plan) = step(&mut w).await;
    assert!(milestones(&plan).is_empty());

    // Changes asked for: through the queue, then a planning turn with the person's words.
    decide_file(
        &mut w,
        "plan-1-changes",
        "by: alice@example.com\nplan: 1\nchanges: Use RS256 with key rotation.\n",
        "alice@example.com",
    );
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Queued);
    assert_eq!(plan.status.reason.as_deref(), Some("PlanChangesRequested"));
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Preparing);
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Planning);
    let asked = w.agent.sent_text("plan-changes-plan-1-changes");
    assert!(asked.contains("Use RS256 with key rotation."), "{asked}");
    assert!(
        asked.contains("alice@example.com reviewed version 1"),
        "{asked}"
    );
    assert_eq!(plan_status(&w).pending, None);

    drafted(&mut w, "# JWT\nUse RS256, keys rotated weekly.\n");
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    assert_eq!(plan_status(&w).version, 2);

    // An approval of version 1 does not approve version 2.
    decide_file(
        &mut w,
        "plan-1-ok",
        "by: alice@example.com\nplan: 1\n",
        "alice@example.com",
    );
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    assert!(milestones(&plan)[0].contains("names plan v1; the plan is at v2"));

    decide_file(
        &mut w,
        "plan-2",
        "by: alice@example.com\nplan: 2\n",
        "alice@example.com",
    );
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Queued);
    assert!(
        milestones(&plan)
            .iter()
            .any(|m| m == "✅ plan v2 approved by alice@example.com")
    );
    let st = plan_status(&w);
    assert_eq!(st.state, PlanState::Approved);
    assert_eq!(
        st.approved.as_ref().map(|a| a.file.as_str()),
        Some("plan-2")
    );

    // The build: a session of its own, the approved plan in its first prompt.
    let _ = step(&mut w).await;
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Running);
    let sessions = w.agent.sessions.lock().unwrap().clone();
    assert_eq!(sessions.last().map(|s| s.0), Some(Stage::Build));
    let task = w.agent.sent_text("task");
    assert!(task.contains("## The approved plan (version 2)"), "{task}");
    assert!(task.contains("Use RS256, keys rotated weekly."), "{task}");
}

#[tokio::test]
async fn a_persons_edit_of_the_plan_is_the_next_change_request() {
    let mut w = World::new(Phase::Preparing);
    quick(&mut w);
    let _ = step(&mut w).await;
    drafted(&mut w, "# JWT\n");
    let _ = step(&mut w).await;
    w.task_file(
        "plan/specs/spec-jwt/SPEC.md",
        "# JWT\n\nNo refresh tokens.\n",
    )
    .by(
        "plan/specs/spec-jwt/SPEC.md",
        "alice@example.com",
        "alice@example.com",
    );
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Queued);
    assert_eq!(plan.status.reason.as_deref(), Some("PlanEdited"));
    let pending = plan_status(&w).pending.unwrap();
    assert_eq!(pending.by, "alice@example.com");
    assert!(
        pending.text.contains("No refresh tokens."),
        "{}",
        pending.text
    );
    let _ = step(&mut w).await;
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Planning);
    // The planner's folder gets the person's version before its turn.
    let restored = w.planner.restored.lock().unwrap().clone();
    assert_eq!(
        restored.last().unwrap().1["specs/spec-jwt/SPEC.md"],
        "# JWT\n\nNo refresh tokens.\n"
    );
    assert!(
        w.agent
            .sent_ids()
            .iter()
            .any(|i| i.starts_with("plan-changes-edit-"))
    );
}

fn table() -> Vec<Case> {
    vec![
        Case {
            name: "plan.mode none (the default): straight to the build",
            phase: Phase::Preparing,
            given: none,
            then_phase: Phase::Running,
            reason: Some("AgentStarted"),
            action: requeue(0),
            check: |w, _| assert!(w.planner.restored.lock().unwrap().is_empty()),
        },
        Case {
            name: "a task's own plan.mode overrides gaffer.yaml's",
            phase: Phase::Preparing,
            given: |w| {
                w.task_file("task.yaml", "title: Add JWT\nplan: {mode: quick}\n");
            },
            then_phase: Phase::Planning,
            reason: Some("PlanStarted"),
            action: requeue(0),
            check: |_, _| {},
        },
        Case {
            name: "no BMAD installed: the task waits and says how to install it",
            phase: Phase::Preparing,
            given: |w| {
                quick(w);
                w.file(
                    "projects/demo/api/project.yaml",
                    &PROJECT.replace("runtime: scripted", "runtime: opencode"),
                );
                w.planner = Arc::new(FakePlanner {
                    missing: true,
                    ..FakePlanner::default()
                });
            },
            then_phase: Phase::Preparing,
            reason: Some("PlannerMissing"),
            action: Action::await_change(),
            check: |_, p| {
                assert!(p.status.message.as_deref().unwrap().contains("--bmad"));
                assert!(p.status.agent.is_none(), "no session without a planner");
            },
        },
        Case {
            name: "party planning starts with the personas' discussion",
            phase: Phase::Preparing,
            given: |w| {
                w.file("gaffer.yaml", &format!("{GAFFER}plan: {{mode: party}}\n"));
            },
            then_phase: Phase::Planning,
            reason: Some("PlanStarted"),
            action: requeue(0),
            check: |w, _| {
                let p = w.agent.sent_text("plan");
                assert!(
                    p.contains("`bmad-party-mode`") && p.contains("non-interactive"),
                    "{p}"
                );
            },
        },
        Case {
            name: "another task of the project is planning: wait for the workspace",
            phase: Phase::Preparing,
            given: |w| {
                quick(w);
                let s = TaskStatus {
                    phase: Phase::Planning,
                    ..TaskStatus::default()
                };
                w.file("projects/demo/api/tasks/other/task.yaml", "title: Other\n");
                w.file(
                    "projects/demo/api/tasks/other/status.yaml",
                    &crate::state::yaml::to_string(&s).unwrap(),
                );
            },
            then_phase: Phase::Preparing,
            reason: Some("PlannerBusy"),
            action: requeue(15),
            check: |w, _| assert!(w.agent.sent_ids().is_empty()),
        },
        Case {
            name: "a hand-edited plan.yaml that does not parse: a located error, nothing else",
            phase: Phase::AwaitingPlanApproval,
            given: |w| {
                quick(w);
                w.task_file(
                    "plan.yaml",
                    "mode: quick\nstep: spec\nversion: two\nstate: Approved\n",
                );
                w.task_file("approvals/plan-2.yaml", "by: alice@example.com\nplan: 2\n")
                    .by(
                        "approvals/plan-2.yaml",
                        "alice@example.com",
                        "alice@example.com",
                    );
            },
            then_phase: Phase::AwaitingPlanApproval,
            reason: Some("InvalidPlan"),
            action: Action::await_change(),
            check: |_, p| {
                let msg = p.status.message.as_deref().unwrap();
                assert!(msg.contains("tasks/jwt/plan.yaml:3:"), "{msg}");
            },
        },
        Case {
            name: "an empty planning turn fails the task with why",
            phase: Phase::Planning,
            given: |w| {
                quick(w);
                w.poll(vec![AgentEvent::Finished("done".into())]);
            },
            then_phase: Phase::Failed,
            reason: Some("PlanEmpty"),
            action: Action::await_change(),
            check: |_, p| assert_eq!(p.status.effects.failed_in, Some(Phase::Planning)),
        },
        Case {
            name: "a question while planning keeps the phase (no AwaitingAnswer)",
            phase: Phase::Planning,
            given: |w| {
                quick(w);
                w.poll(vec![asked("q1", &["HS256 (Recommended)", "RS256"])]);
            },
            then_phase: Phase::Planning,
            reason: None,
            action: requeue(0),
            check: |_, p| assert_eq!(p.questions.len(), 1),
        },
    ]
}

#[tokio::test]
async fn planning_table() {
    run_table(table()).await;
}

#[tokio::test]
async fn more_open_questions_than_document_over_go_into_one_document() {
    for (over, docs) in [(2, 1), (3, 0)] {
        let mut w = World::new(Phase::Planning);
        w.file(
            "gaffer.yaml",
            &format!("{GAFFER}plan: {{mode: quick, document_over: {over}}}\n"),
        );
        w.poll(vec![
            asked("q1", &["A (Recommended)", "B"]),
            asked("q2", &["A (Recommended)", "B"]),
            asked("q3", &["A (Recommended)", "B"]),
        ]);
        let (_, plan) = w.step().await.unwrap();
        assert_eq!(plan.phase(), Phase::Planning);
        assert_eq!(plan.questions.len(), 3);
        assert_eq!(plan.docs.len(), docs, "document_over {over}");
        if docs == 1 {
            assert!(
                milestones(&plan)
                    .iter()
                    .any(|m| m.starts_with("🗒 questions/batch-001.md: 3 questions")),
                "{:?}",
                milestones(&plan)
            );
        }
    }
}

const EPICS: &str = "# Epics\n\n## Epic 1: Tokens\n\n### Story 1.1: Issue tokens\nAs a user I get a token.\n\n### Story 1.2: Verify tokens\nAs a service I check it.\n\n## Epic 2: Admin\n\n### Story 2.1: Revoke tokens\nAs an admin I revoke one.\n";

/// The planner writes `path` and says its step is done.
fn step_done(w: &mut World, path: &str, text: &str) {
    w.planner
        .output
        .lock()
        .unwrap()
        .insert(path.into(), text.into());
    w.poll(vec![AgentEvent::Finished(format!("{path} written"))]);
}

#[tokio::test]
async fn a_full_plan_runs_its_steps_and_its_stories_become_tasks_built_in_order() {
    let mut w = World::new(Phase::Preparing);
    w.file("gaffer.yaml", &format!("{GAFFER}plan: {{mode: full}}\n"));
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Planning);
    assert!(w.agent.sent_text("plan").contains("`bmad-prd`"));

    // Each step's documents are committed before the next step starts, in the same session.
    step_done(&mut w, "planning-artifacts/prd.md", "# PRD\n");
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::Planning);
    let st = plan_status(&w);
    assert_eq!(
        (st.version, st.step.as_str(), st.state),
        (1, "architecture", PlanState::Drafting)
    );
    assert_eq!(
        w.files["projects/demo/api/tasks/jwt/plan/planning-artifacts/prd.md"],
        "# PRD\n"
    );
    assert!(
        w.agent
            .sent_text("plan-step-architecture")
            .contains("`bmad-architecture`")
    );
    step_done(
        &mut w,
        "planning-artifacts/architecture.md",
        "# Architecture\nOne service.\n",
    );
    let _ = step(&mut w).await;
    assert!(
        w.agent
            .sent_text("plan-step-epics")
            .contains("### Story N.M: title")
    );
    step_done(&mut w, "planning-artifacts/epics.md", EPICS);
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    assert_eq!(plan_status(&w).version, 3);

    // Approved: three story tasks, created once, and the parent waits for them.
    decide_file(
        &mut w,
        "plan-3",
        "by: alice@example.com\nplan: 3\n",
        "alice@example.com",
    );
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::BuildingStories);
    let updates = plan.updates().unwrap();
    let children: Vec<_> = updates
        .iter()
        .filter(|u| matches!(u.path, crate::state::StatePath::TaskSpec(_)))
        .collect();
    assert_eq!(children.len(), 3);
    assert!(
        children.iter().all(|u| u.create_only),
        "never over an existing task.yaml"
    );
    w.apply(&mut plan);
    let child = |n: &str| -> crate::state::spec::TaskSpec {
        let text = &w.files[&format!("projects/demo/api/tasks/jwt-{n}/task.yaml")];
        crate::state::yaml::parse(text.as_bytes()).unwrap()
    };
    let c = child("1-2");
    assert_eq!(c.title, "1.2 Verify tokens");
    assert!(c.description.contains("As a service I check it."));
    assert_eq!(
        (c.parent.as_ref().map(|p| p.as_str()), c.story.as_deref()),
        (Some("jwt"), Some("1.2"))
    );
    assert_eq!(c.plan.and_then(|p| p.mode), Some(PlanMode::None));

    // Stories are built in order: 1.2 waits while 1.1 is not done.
    let story = |w: &mut World, n: &str, phase: Phase| {
        let s = TaskStatus {
            phase,
            ..TaskStatus::default()
        };
        w.file(
            &format!("projects/demo/api/tasks/jwt-{n}/status.yaml"),
            &crate::state::yaml::to_string(&s).unwrap(),
        );
    };
    story(&mut w, "1-1", Phase::Running);
    story(&mut w, "1-2", Phase::Queued);
    let mut c12 = World::new(Phase::Queued);
    c12.files = w.files.clone();
    let (_, plan) = step_task(&c12, "jwt-1-2").await;
    assert_eq!(plan.status.reason.as_deref(), Some("StoryOrder"));
    assert_eq!(plan.phase(), Phase::Queued);
    // The parent shows its stories, and is promoted when they are.
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::BuildingStories);
    let msg = plan.status.message.clone().unwrap();
    assert!(
        msg.contains("1.1 Running, 1.2 Queued, 2.1 Pending"),
        "{msg}"
    );
    // BMAD's own sprint status tells the same, in the plan and in the workspace.
    let sprint = plan.plan_docs["implementation-artifacts/sprint-status.yaml"]
        .clone()
        .unwrap();
    for line in [
        "  epic-1: in-progress\n",
        "  1-1-issue-tokens: in-progress\n",
        "  1-2-verify-tokens: backlog\n",
        "  epic-2: backlog\n",
        "  2-1-revoke-tokens: backlog\n",
    ] {
        assert!(sprint.contains(line), "{line:?} in\n{sprint}");
    }
    let restored = w.planner.restored.lock().unwrap().last().cloned().unwrap();
    assert_eq!(restored.0, "jwt");
    assert_eq!(
        restored
            .1
            .get("implementation-artifacts/sprint-status.yaml"),
        Some(&sprint)
    );
    let mut applied = plan.clone();
    w.apply(&mut applied);
    let (_, again) = w.step().await.unwrap();
    assert!(
        again.plan_docs.is_empty(),
        "an unchanged state writes nothing"
    );
    story(&mut w, "1-1", Phase::Promoted);
    story(&mut w, "1-2", Phase::Promoted);
    story(&mut w, "2-1", Phase::Cancelled);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Promoted);
    assert!(
        milestones(&plan)
            .iter()
            .any(|m| m == "🏁 all 2 stories promoted (1 cancelled)")
    );
}

#[tokio::test]
async fn a_malformed_epics_file_stops_the_approval_where_it_is_wrong() {
    let mut w = World::new(Phase::Preparing);
    w.file("gaffer.yaml", &format!("{GAFFER}plan: {{mode: full}}\n"));
    let _ = step(&mut w).await;
    step_done(&mut w, "planning-artifacts/prd.md", "# PRD\n");
    let _ = step(&mut w).await;
    step_done(&mut w, "planning-artifacts/architecture.md", "# A\n");
    let _ = step(&mut w).await;
    step_done(
        &mut w,
        "planning-artifacts/epics.md",
        "## Epic 1: A\n### Story 1.x: T\n",
    );
    let _ = step(&mut w).await;
    decide_file(
        &mut w,
        "plan-3",
        "by: alice@example.com\nplan: 3\n",
        "alice@example.com",
    );
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    assert_eq!(plan.status.reason.as_deref(), Some("InvalidEpics"));
    let msg = plan.status.message.clone().unwrap();
    assert!(
        msg.starts_with("projects/demo/api/tasks/jwt/plan/planning-artifacts/epics.md:2:"),
        "{msg}"
    );
    assert!(plan.child_tasks.is_empty());
    assert!(
        plan.updates()
            .unwrap()
            .iter()
            .all(|u| !matches!(u.path, crate::state::StatePath::TaskSpec(_)))
    );
}

#[tokio::test]
async fn a_later_story_queued_first_does_not_hold_up_the_next_one() {
    let mut w = World::new(Phase::BuildingStories);
    let story = |w: &mut World, n: &str, story: &str, phase: Phase, since: &str| {
        w.file(
            &format!("projects/demo/api/tasks/jwt-{n}/task.yaml"),
            &format!("title: {story}\nparent: jwt\nstory: '{story}'\nplan: {{mode: none}}\n"),
        );
        let s = TaskStatus {
            phase,
            phase_since: Some(since.parse().unwrap()),
            ..TaskStatus::default()
        };
        w.file(
            &format!("projects/demo/api/tasks/jwt-{n}/status.yaml"),
            &crate::state::yaml::to_string(&s).unwrap(),
        );
    };
    story(
        &mut w,
        "1-1",
        "1.1",
        Phase::Promoted,
        "2026-11-24T10:00:00Z",
    );
    // 2.1 has waited longer than 1.2, but it waits for 1.2: 1.2 goes first.
    story(&mut w, "2-1", "2.1", Phase::Queued, "2026-11-24T10:00:01Z");
    story(&mut w, "1-2", "1.2", Phase::Queued, "2026-11-24T10:00:02Z");
    let (_, plan) = step_task(&w, "jwt-1-2").await;
    assert_eq!(plan.phase(), Phase::Preparing, "{:?}", plan.status.message);
    let (_, plan) = step_task(&w, "jwt-2-1").await;
    assert_eq!(plan.phase(), Phase::Queued);
    assert_eq!(plan.status.reason.as_deref(), Some("StoryOrder"));
}

#[tokio::test]
async fn a_turn_that_ends_with_questions_open_lists_them_in_the_plan() {
    let mut w = World::new(Phase::Planning);
    quick(&mut w);
    w.planner
        .output
        .lock()
        .unwrap()
        .insert("specs/spec-jwt/SPEC.md".into(), "# Spec\n".into());
    w.poll(vec![
        asked("q1", &["HS256 (Recommended)", "RS256"]),
        AgentEvent::Finished("spec, one question open".into()),
    ]);
    let (_, plan) = step(&mut w).await;
    assert_eq!(plan.phase(), Phase::AwaitingPlanApproval);
    assert_eq!(plan_status(&w).open_questions, ["Which algorithm?"]);
}
