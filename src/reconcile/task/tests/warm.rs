//! A project's builder started ahead of its first task: when, and that it is made exactly
//! as the task's session will want it (so nothing is started twice).

use std::sync::Arc;

use super::*;
use crate::names::ProjectRef;
use crate::reconcile::project;

fn proj() -> ProjectRef {
    task().project
}

/// The project's reconcile, which never asks to be run again by itself.
async fn warm(w: &World) {
    let action = project::reconcile(proj(), Arc::new(w.ctx())).await.unwrap();
    assert_eq!(action, Action::await_change());
}

#[test]
fn a_builder_is_warmed_for_a_new_project_or_a_waiting_task_never_under_an_active_one() {
    let spec = |warm: bool| -> ProjectSpec {
        let mut s: ProjectSpec = crate::state::yaml::parse(PROJECT.as_bytes()).unwrap();
        s.agent.warm = warm;
        s
    };
    use Phase::*;
    let rows: &[(&str, bool, &[Option<Phase>], bool)] = &[
        ("a project just committed, no task yet", true, &[], true),
        ("a task committed, not yet seen", true, &[None], true),
        ("a task pending", true, &[Some(Pending)], true),
        (
            "a task queued behind finished ones",
            true,
            &[Some(Promoted), Some(Queued)],
            true,
        ),
        (
            "only finished tasks",
            true,
            &[Some(Promoted), Some(Cancelled), Some(Failed)],
            false,
        ),
        ("a suspended task", true, &[Some(Suspended)], false),
        (
            "a task running (its builder is looked after)",
            true,
            &[Some(Running), Some(Queued)],
            false,
        ),
        ("a task in review", true, &[Some(InReview)], false),
        ("agent.warm: false", false, &[], false),
        (
            "agent.warm: false, a task queued",
            false,
            &[Some(Queued)],
            false,
        ),
    ];
    for (what, warm, phases, want) in rows {
        assert_eq!(project::wants_warm(&spec(*warm), phases), *want, "{what}");
    }
}

#[test]
fn warm_is_on_unless_the_project_says_otherwise() {
    let on: ProjectSpec = crate::state::yaml::parse(PROJECT.as_bytes()).unwrap();
    assert!(on.agent.warm);
    let off: ProjectSpec = crate::state::yaml::parse(
        PROJECT
            .replace(
                "agent: {runtime: scripted}",
                "agent: {runtime: scripted, warm: false}",
            )
            .as_bytes(),
    )
    .unwrap();
    assert!(!off.agent.warm);
}

#[tokio::test]
async fn the_builder_warmed_for_a_queued_task_is_the_one_its_session_asks_for() {
    let mut w = World::new(Phase::Queued);
    warm(&w).await;
    assert!(w.ws.called("warm"), "the mirrors are readied first");
    w.edit_status(|s| s.phase = Phase::Preparing);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Running, "{:?}", plan.status);
    let builders = w.agent.builders.lock().unwrap().clone();
    let kinds: Vec<&str> = builders.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["warm", "session"]);
    // Same workspace, lab access, sandbox and git dirs: the session finds the warm server
    // as it wants it.
    assert_eq!(builders[0].1, builders[1].1);
    assert!(
        builders[0].1.env.iter().any(|(k, _)| k == "LAB_NAMESPACE"),
        "{:?}",
        builders[0].1
    );

    // Once the task is active, the project leaves its builder alone.
    w.apply(&mut plan.clone());
    warm(&w).await;
    assert_eq!(w.agent.builders.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_builder_missing_a_credential_is_not_warmed_and_its_task_says_why() {
    let mut w = World::new(Phase::Queued);
    w.file(
        "projects/demo/api/project.yaml",
        &PROJECT.replace(
            "agent: {runtime: scripted}",
            "agent: {runtime: scripted, env_from: [{name: API_KEY, env: GAFFER_TEST_SURELY_UNSET_VAR}]}",
        ),
    );
    warm(&w).await;
    assert!(w.agent.builders.lock().unwrap().is_empty());
    w.edit_status(|s| s.phase = Phase::Preparing);
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(
        condition(&plan, "AgentReady"),
        Some(("False".into(), "MissingCredential".into()))
    );
}
