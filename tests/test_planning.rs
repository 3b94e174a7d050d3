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

const FULL_TITLE: &str = "Token service";

fn ask(question: &str, options: &[&str]) -> Step {
    let options: Vec<_> = options
        .iter()
        .map(|o| json!({"label": o, "description": ""}))
        .collect();
    Step::tool(
        "question",
        json!({"questions": [{"question": question, "header": "Plan", "multiple": false, "options": options}]}),
    )
}

fn write(path: &str, content: &str) -> Step {
    Step::tool("write", json!({"filePath": path, "content": content}))
}

const EPICS_V1: &str = "# Epics\n\n## Epic 1: Tokens\n\n### Story 1.1: Issue tokens\nAs a user I get a token.\n\n### Story 1.2: Verify tokens\nAs a service I check one.\n\n## Epic 2: Admin\n\n### Story 2.1: Revoke tokens\nAs an admin I revoke one.\n";

fn full_plan_steps() -> Vec<Step> {
    let epics = |text: &str| write("_bmad-output/planning-artifacts/epics.md", text);
    vec![
        // PRD, with a question a person answers.
        Step::tool("skill", json!({"name": "bmad-prd"})),
        ask(
            "Who uses the tokens?",
            &["Browser clients (Recommended)", "Services only"],
        ),
        write(
            "_bmad-output/planning-artifacts/prd.md",
            "# PRD: tokens\nFor services.\n",
        ),
        Step::text("DONE: PRD written"),
        // Architecture, with a question left to its deadline.
        Step::tool("skill", json!({"name": "bmad-architecture"})),
        ask(
            "Where do signing keys live?",
            &["A Kubernetes Secret (Recommended)", "Vault"],
        ),
        write(
            "_bmad-output/planning-artifacts/architecture.md",
            "# Architecture\nOne token service; keys in a Kubernetes Secret.\n",
        ),
        Step::text("DONE: architecture written"),
        // Epics and stories.
        epics(EPICS_V1),
        Step::text("DONE: three stories in two epics"),
        // The revision a person asks for.
        epics(&EPICS_V1.replace(
            "As an admin I revoke one.",
            "As an admin I revoke one; revoked tokens are listed.",
        )),
        Step::text("DONE: story 2.1 now lists revoked tokens"),
    ]
}

#[test]
fn a_full_plan_is_asked_revised_approved_and_its_stories_built_in_order() {
    crate::common::ensure_rg();
    let lab = crate::test_opencode::Lab::build(
        &["web-api"],
        "20s",
        "at-deadline",
        "plan: {mode: full}\n",
    );
    lab.llm
        .script(&format!("# Plan: {FULL_TITLE}"), full_plan_steps());
    let stories = [
        ("1-1", "1.1 Issue tokens"),
        ("1-2", "1.2 Verify tokens"),
        ("2-1", "2.1 Revoke tokens"),
    ];
    for (n, title) in stories {
        lab.llm.script(
            &format!("# Task: {title}"),
            fix_steps(&format!("tokens-{n}")),
        );
    }
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/tokens/task.yaml",
            &format!("title: {FULL_TITLE}\ndescription: Issue, verify and revoke tokens.\n"),
        )],
        "a task planned in full",
    );
    let d = lab.daemon();
    let t = "demo/web-api/tokens";
    let tref = gaffer::names::TaskRef::parse(t).unwrap();
    // The PRD's question is answered by a person; the architecture's is left to its deadline.
    lab.wait_until(120, "the PRD's question", |s| {
        s.task(&tref).is_some_and(|e| !e.questions.is_empty())
    });
    commit_as(
        &lab.state,
        PERSON,
        &[(
            "projects/demo/web-api/tasks/tokens/answers/q-001.yaml",
            &format!("choice: Services only\nby: {PERSON}\n"),
        )],
        "answer",
    );
    let snap = lab.wait_until(180, "plan v3 waiting for approval", |s| {
        phase_of(s, t) == Some(Phase::AwaitingPlanApproval)
    });
    let entry = snap.task(&tref).unwrap();
    assert_eq!(
        entry.plan.as_deref().unwrap().version,
        3,
        "PRD, architecture, epics"
    );
    let decided: Vec<_> = entry
        .questions
        .values()
        .map(|q| q.decision.as_ref().unwrap().decided_by)
        .collect();
    assert_eq!(
        decided,
        [
            gaffer::state::status::DecidedBy::Human,
            gaffer::state::status::DecidedBy::TimeoutDefault
        ]
    );
    let plan_log = lab.llm.log_of(&format!("# Plan: {FULL_TITLE}"));
    let after_q1 = plan_log.iter().find(|l| l.step == 2).unwrap();
    assert!(
        after_q1
            .tool_texts
            .iter()
            .any(|t| t.contains("Services only")),
        "{after_q1:?}"
    );

    // Changes asked by commit: the planner's revision is version 4.
    commit_as(
        &lab.state,
        PERSON,
        &[(
            "projects/demo/web-api/tasks/tokens/approvals/plan-3-changes.yaml",
            &format!("by: {PERSON}\nplan: 3\nchanges: List revoked tokens too.\n"),
        )],
        "changes",
    );
    let snap = lab.wait_until(120, "plan v4", |s| {
        s.task(&tref)
            .and_then(|e| e.plan.as_deref())
            .is_some_and(|p| p.version == 4)
            && phase_of(s, t) == Some(Phase::AwaitingPlanApproval)
    });
    assert!(
        snap.task(&tref).unwrap().plan_docs["planning-artifacts/epics.md"]
            .contains("revoked tokens are listed")
    );
    let revision = lab.llm.log_of(&format!("# Plan: {FULL_TITLE}"));
    assert!(
        revision
            .iter()
            .any(|l| l.last_user.contains("List revoked tokens too."))
    );

    // Approved by commit; gaffer is killed right after making the story tasks, before
    // committing them: the next run makes each exactly once.
    drop(d);
    let mut crashing = lab.daemon_env(&[("GAFFER_CRASH_AT", "plan:children")]);
    commit_as(
        &lab.state,
        PERSON,
        &[(
            "projects/demo/web-api/tasks/tokens/approvals/plan-4.yaml",
            &format!("by: {PERSON}\nplan: 4\n"),
        )],
        "approve the plan",
    );
    assert!(!crashing.wait_exit(120).success());
    let _d = lab.daemon();
    let snap = lab.wait_until(400, "the parent promoted", |s| {
        phase_of(s, t) == Some(Phase::Promoted)
    });
    let children: Vec<_> = snap
        .tasks()
        .filter(|(_, e)| e.spec.as_ref().and_then(|s| s.parent.as_ref()).is_some())
        .map(|(c, _)| c.task.to_string())
        .collect();
    assert_eq!(children, ["tokens-1-1", "tokens-1-2", "tokens-2-1"]);
    // Built in order; each story's build saw its story and the approved architecture.
    let promoted_at = |n: &str| {
        let c = gaffer::names::TaskRef::parse(&format!("demo/web-api/tokens-{n}")).unwrap();
        snap.task(&c)
            .unwrap()
            .status
            .as_ref()
            .unwrap()
            .phase_since
            .unwrap()
    };
    assert!(promoted_at("1-1") < promoted_at("1-2") && promoted_at("1-2") < promoted_at("2-1"));
    for (_, title) in stories {
        let log = lab.llm.log_of(&format!("# Task: {title}"));
        let first = &log[0].last_user;
        assert!(
            first.contains("## The approved plan of tokens (version 4)"),
            "{first}"
        );
        assert!(first.contains("keys in a Kubernetes Secret"), "{first}");
        assert_eq!(
            step_counts(&lab.llm, &format!("# Task: {title}"))
                .values()
                .max(),
            Some(&1)
        );
    }
}

#[test]
fn many_planning_questions_become_one_document_whose_annotations_reach_the_planner() {
    crate::common::ensure_rg();
    let lab = crate::test_opencode::Lab::build(
        &["web-api"],
        "1h",
        "at-deadline",
        "plan: {mode: quick, document_over: 2}\n",
    );
    let title = "Token decisions";
    let q = |text: &str, options: &[&str]| {
        json!({"question": text, "header": "Plan",
            "options": options.iter().map(|o| json!({"label": o, "description": ""})).collect::<Vec<_>>()})
    };
    lab.llm.script(
        &format!("# Plan: {title}"),
        vec![
            Step::tool(
                "question",
                json!({"questions": [
                    q("Which signing algorithm?", &["RS256 (Recommended)", "HS256"]),
                    q("How long do tokens live?", &["15m (Recommended)", "1h"]),
                    q("Where do refresh tokens go?", &["Cookie (Recommended)", "Header"]),
                ]}),
            ),
            write(
                "_bmad-output/specs/spec-decide/SPEC.md",
                "# Spec\nDecided.\n",
            ),
            Step::text("DONE: spec with the three decisions"),
        ],
    );
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/decide/task.yaml",
            &format!("title: {title}\n"),
        )],
        "a task planned first",
    );
    let _d = lab.daemon();
    let t = gaffer::names::TaskRef::parse("demo/web-api/decide").unwrap();
    lab.wait_until(120, "the question document", |s| {
        s.task(&t).is_some_and(|e| !e.question_docs.is_empty())
    });
    // A person ticks a box for each question in the document and commits it.
    let doc_path = "projects/demo/web-api/tasks/decide/questions/batch-001.md";
    let dir = crate::test_questions::person_clone(&lab);
    let text = std::fs::read_to_string(dir.join(doc_path)).unwrap();
    let ticked = text
        .replace("• [ ] HS256", "• [x] HS256")
        .replace("• [ ] 1h", "• [x] 1h")
        .replace("• [ ] Header", "• [x] Header");
    std::fs::write(dir.join(doc_path), ticked).unwrap();
    crate::test_questions::person_commit(&dir, "plan decisions");
    let snap = lab.wait_until(120, "the plan waiting for approval", |s| {
        phase_of(s, "demo/web-api/decide") == Some(Phase::AwaitingPlanApproval)
    });
    // The planner's next request carries the person's three answers, once.
    let next: Vec<_> = lab
        .llm
        .log_of(&format!("# Plan: {title}"))
        .into_iter()
        .filter(|l| l.step == 1)
        .collect();
    assert_eq!(next.len(), 1);
    let result = next[0].tool_texts.join("\n");
    for a in ["HS256", "1h", "Header"] {
        assert!(result.contains(a), "{result}");
    }
    let plan = snap.task(&t).unwrap().plan.clone().unwrap();
    assert!(plan.open_questions.is_empty(), "{:?}", plan.open_questions);
}
