//! The planning stage with the real OpenCode and the real BMAD Method (bmad-method 6.12.0
//! installed into the builder's workspace by gaffer), against a scripted model that loads
//! the skill, tries to edit a repository (refused), writes the spec and ends its turn.

use gaffer::cli::demo::PERSON;
use gaffer::state::planning::PlanState;
use gaffer::state::status::Phase;
use serde_json::json;

use crate::common::commit_as;
use crate::common::llm::Step;
use crate::test_opencode::{Lab, fix_steps, phase_of, step_counts};

const TITLE: &str = "Token fix planned";

fn plan_steps() -> Vec<Step> {
    vec![
        Step::tool("skill", json!({"name": "bmad-spec"})),
        // A planning session may not touch the repositories…
        Step::tool(
            "write",
            json!({"filePath": "repos/web-api/app/sneaky.txt", "content": "no\n"}),
        ),
        // …only the plan's folder.
        Step::tool(
            "write",
            json!({
                "filePath": "_bmad-output/specs/spec-planned/SPEC.md",
                "content": "# Spec: token lifetime\n\n## Why\nTokens expire at once.\n\n## Capabilities\n- CAP-1: tokens last fifteen minutes\n",
            }),
        ),
        Step::text("The spec is written.\nDONE: spec for a fifteen-minute token lifetime"),
    ]
}

#[test]
fn a_quick_plan_is_written_with_the_real_bmad_skill_approved_and_then_built() {
    crate::common::ensure_rg();
    let lab = Lab::with_settings(&["web-api"], "plan: {mode: quick}\n");
    lab.llm.script(&format!("# Plan: {TITLE}"), plan_steps());
    // The build conversation starts with "# Task: <title>" and carries the approved spec.
    lab.llm
        .script(&format!("# Task: {TITLE}"), fix_steps("planned"));
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/planned/task.yaml",
            &format!(
                "title: {TITLE}\ndescription: Tokens expire at once; make them last fifteen minutes.\n"
            ),
        )],
        "a task planned first",
    );
    let _d = lab.daemon();
    let t = "demo/web-api/planned";
    let snap = lab.wait_until(180, "the plan waiting for approval", |s| {
        phase_of(s, t) == Some(Phase::AwaitingPlanApproval)
    });
    let entry = snap
        .task(&gaffer::names::TaskRef::parse(t).unwrap())
        .unwrap();
    let plan = entry.plan.as_deref().unwrap();
    assert_eq!((plan.version, plan.state), (1, PlanState::AwaitingApproval));
    let spec = &entry.plan_docs["specs/spec-planned/SPEC.md"];
    assert!(
        spec.contains("CAP-1: tokens last fifteen minutes"),
        "{spec}"
    );

    // The real skill was loaded from the workspace gaffer installed BMAD into.
    let log = lab.llm.log_of(&format!("# Plan: {TITLE}"));
    let after_skill = log
        .iter()
        .find(|l| l.step == 1)
        .expect("the step after the skill");
    assert!(
        after_skill
            .tool_texts
            .iter()
            .any(|t| t.contains("BMad Spec")),
        "the skill tool returned BMAD's SKILL.md: {:?}",
        after_skill.tool_texts
    );
    // The edit of the repository was refused; the plan's folder was written.
    let after_sneak = log.iter().find(|l| l.step == 2).unwrap();
    assert!(
        after_sneak
            .tool_texts
            .iter()
            .any(|t| t.contains("prevents you from using this specific tool call")),
        "{:?}",
        after_sneak.tool_texts
    );
    let project_dir = lab.builders.join("demo-web-api");
    assert!(!project_dir.join("repos/web-api/app/sneaky.txt").exists());
    let mended =
        std::fs::read_to_string(project_dir.join(".opencode/commands/bmad-spec.md")).unwrap();
    assert!(
        mended.contains("@.agents/skills/bmad-spec/SKILL.md"),
        "{mended}"
    );
    assert!(project_dir.join("_bmad/custom/bmad-spec.toml").is_file());
    // Nothing built yet.
    assert!(
        lab.llm.log_of(&format!("# Task: {TITLE}")).is_empty(),
        "the build waits for the approval"
    );

    // A person approves version 1 with a signed commit; the build starts with the spec.
    commit_as(
        &lab.state,
        PERSON,
        &[(
            "projects/demo/web-api/tasks/planned/approvals/plan-1.yaml",
            &format!("by: {PERSON}\nplan: 1\n"),
        )],
        "approve the plan",
    );
    let snap = lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, t) == Some(Phase::Promoted)
    });
    let build = lab.llm.log_of(&format!("# Task: {TITLE}"));
    assert!(
        build[0]
            .last_user
            .contains("## The approved plan (version 1)")
            && build[0]
                .last_user
                .contains("CAP-1: tokens last fifteen minutes"),
        "{}",
        build[0].last_user
    );
    let plan = snap
        .task(&gaffer::names::TaskRef::parse(t).unwrap())
        .unwrap()
        .plan
        .clone()
        .unwrap();
    assert_eq!(plan.approved.unwrap().by, PERSON);
    // Each planning step reached the model once: nothing repeated.
    let counts = step_counts(&lab.llm, &format!("# Plan: {TITLE}"));
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

#[test]
fn kill_9_while_planning_repeats_no_turn_and_loses_no_document() {
    crate::common::ensure_rg();
    let lab = Lab::with_settings(&["web-api"], "plan: {mode: quick}\n");
    lab.llm.script(&format!("# Plan: {TITLE}"), plan_steps());
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/planned/task.yaml",
            &format!("title: {TITLE}\ndescription: Tokens expire at once.\n"),
        )],
        "a task planned first",
    );
    let t = "demo/web-api/planned";
    // Killed right after the planning prompt reached OpenCode, before gaffer recorded it…
    let mut d = lab.daemon_env(&[("GAFFER_CRASH_AT", "plan:prompted")]);
    assert!(!d.wait_exit(120).success());
    // …and right after the turn's documents were read, before they were committed.
    let mut d = lab.daemon_env(&[("GAFFER_CRASH_AT", "plan:collected")]);
    assert!(!d.wait_exit(120).success());
    let _d = lab.daemon();
    let snap = lab.wait_until(120, "the plan waiting for approval", |s| {
        phase_of(s, t) == Some(Phase::AwaitingPlanApproval)
    });
    let entry = snap
        .task(&gaffer::names::TaskRef::parse(t).unwrap())
        .unwrap();
    let plan = entry.plan.as_deref().unwrap();
    assert_eq!(plan.version, 1, "one version, not two");
    assert!(entry.plan_docs["specs/spec-planned/SPEC.md"].contains("CAP-1"));
    let counts = step_counts(&lab.llm, &format!("# Plan: {TITLE}"));
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "no step repeated: {counts:?}"
    );
    let status = entry.status.as_deref().unwrap();
    assert_eq!(status.agent.as_ref().unwrap().prompts_sent, ["plan"]);
}
