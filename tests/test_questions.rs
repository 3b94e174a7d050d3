//! Questions end to end with the real OpenCode, the scripted LLM and real git worktrees:
//! provisional work on its own branch, confirmation by fast-forward, a different answer
//! setting the work aside, deadlines, unauthorized authors, permission requests, and answers
//! that survive gaffer or OpenCode being killed while a question waits.

use gaffer::cli::demo::PERSON;
use gaffer::names::{Qid, TaskRef};
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{DecidedBy, Phase, Question, QuestionKind, QuestionState};
use serde_json::json;

use crate::common::llm::Step;
use crate::common::opencode::kill9;
use crate::common::{commit_as, git};
use crate::test_opencode::{Lab, milestones, phase_of, task, user_messages_with};

const SIGNING: &str = "Which algorithm should sign the tokens?";

fn ask(text: &str, options: &[&str]) -> Step {
    Step::tool(
        "question",
        json!({"questions": [{"question": text, "header": "Signing", "multiple": false,
            "options": options.iter().map(|o| json!({"label": o, "description": format!("use {o}")})).collect::<Vec<_>>()}]}),
    )
}

fn write(path: &str, content: &str) -> Step {
    Step::tool("write", json!({"filePath": path, "content": content}))
}

fn question(snap: &Snapshot, t: &str, qid: &str) -> Option<Question> {
    snap.task(&task(t))?
        .questions
        .get(&Qid::new(qid).unwrap())
        .map(|q| (**q).clone())
}

fn answer(lab: &Lab, t: &str, qid: &str, choice: &str, email: &str) {
    let path = format!("projects/demo/web-api/tasks/{t}/answers/{qid}.yaml");
    let body = format!("choice: {}\nby: {email}\n", json!(choice));
    commit_as(
        &lab.state,
        email,
        &[(path.as_str(), body.as_str())],
        "answer",
    );
}

fn worktree(lab: &Lab) -> std::path::PathBuf {
    lab.builders.join("demo-web-api/repos/web-api")
}

fn has(lab: &Lab, rev: &str, file: &str) -> bool {
    std::process::Command::new("git")
        .current_dir(worktree(lab))
        .args(["cat-file", "-e", &format!("{rev}:{file}")])
        .status()
        .unwrap()
        .success()
}

/// The question, a write after it, a held step (so answers land while the agent works), done.
fn signing_steps(t: &str) -> Vec<Step> {
    vec![
        ask(SIGNING, &["RS256 (Recommended)", "HS256"]),
        write("repos/web-api/app/signing.txt", "RS256\n"),
        // The lab tests pass once app/fixed-<task>.txt exists.
        write(&format!("repos/web-api/app/fixed-{t}.txt"), "more work\n").held(),
        Step::text("DONE: signing configured"),
    ]
}

#[test]
fn the_agent_goes_on_at_once_and_a_matching_answer_fast_forwards_the_branch() {
    let lab = Lab::build(&["web-api"], "1h", "immediately", "");
    lab.add_task("web-api", "sig1", "Signing confirm", signing_steps("sig1"));
    let _d = lab.daemon();
    // The agent did not wait: it is already working on the step after the write.
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let snap = lab.wait_until(60, "the edit after the question checkpointed", |s| {
        milestones(s, "demo/web-api/sig1")
            .iter()
            .any(|(_, t, _)| t.contains("edited repos/web-api/app/signing.txt"))
    });
    let q = question(&snap, "demo/web-api/sig1", "q-001").unwrap();
    assert_eq!(q.state, QuestionState::Provisional);
    assert_eq!(q.recommended, "RS256 (Recommended)");
    assert_eq!(
        q.provisional_branch.as_deref(),
        Some("gaffer-provisional/sig1/q-001")
    );
    assert_eq!(q.parent_branch.as_deref(), Some("gaffer/sig1"));
    assert!(q.request_id.as_deref().unwrap().starts_with("que"));
    assert!(q.deadline.unwrap() > q.asked_at);
    // OpenCode got the recommended option as the answer.
    let step1 = lab.llm.log_of("Signing confirm")[1].clone();
    assert!(
        step1
            .tool_texts
            .iter()
            .any(|t| t.contains("RS256 (Recommended)")),
        "{step1:?}"
    );
    // The work since the question is on the provisional branch only.
    assert!(has(
        &lab,
        "gaffer-provisional/sig1/q-001",
        "app/signing.txt"
    ));
    assert!(!has(&lab, "gaffer/sig1", "app/signing.txt"));
    assert_eq!(
        git(&worktree(&lab), &["branch", "--show-current"]),
        "gaffer-provisional/sig1/q-001"
    );

    answer(&lab, "sig1", "q-001", "RS256 (Recommended)", PERSON);
    let snap = lab.wait_until(60, "q-001 confirmed", |s| {
        milestones(s, "demo/web-api/sig1")
            .iter()
            .any(|(_, t, _)| t.contains("q-001 confirmed"))
    });
    let q = question(&snap, "demo/web-api/sig1", "q-001").unwrap();
    assert_eq!(q.state, QuestionState::Answered);
    let d = q.decision.unwrap();
    assert_eq!(d.decided_by, DecidedBy::Human);
    assert_eq!(d.by.as_deref(), Some(PERSON));
    assert!(
        has(&lab, "gaffer/sig1", "app/signing.txt"),
        "fast-forwarded"
    );
    assert_eq!(
        git(&worktree(&lab), &["branch", "--show-current"]),
        "gaffer/sig1"
    );
    lab.llm.release();
    lab.wait_until(120, "promoted", |s| {
        phase_of(s, "demo/web-api/sig1") == Some(Phase::Promoted)
    });
    assert!(has(&lab, "gaffer/sig1", "app/fixed-sig1.txt"));
}

#[test]
fn a_different_answer_sets_the_work_aside_and_an_unlisted_author_is_ignored() {
    let lab = Lab::build(&["web-api"], "1h", "immediately", "");
    let key = "Signing override";
    lab.add_task("web-api", "sig2", key, signing_steps("sig2"));
    let _d = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    lab.wait_until(60, "the edit after the question checkpointed", |s| {
        milestones(s, "demo/web-api/sig2")
            .iter()
            .any(|(_, t, _)| t.contains("edited repos/web-api/app/signing.txt"))
    });

    // Someone not listed in gaffer.yaml: reported on the question, nothing else happens.
    answer(&lab, "sig2", "q-001", "HS256", "intruder@example.com");
    let snap = lab.wait_until(60, "the refusal recorded", |s| {
        question(s, "demo/web-api/sig2", "q-001").is_some_and(|q| !q.problems.is_empty())
    });
    let q = question(&snap, "demo/web-api/sig2", "q-001").unwrap();
    assert!(
        q.problems[0].contains("intruder@example.com")
            && q.problems[0].contains("not listed in gaffer.yaml authors.answers"),
        "{:?}",
        q.problems
    );
    assert_eq!(q.state, QuestionState::Provisional);
    assert!(q.decision.is_none());
    assert!(worktree(&lab).join("app/signing.txt").exists());

    // The person listed says HS256: the work since the question is set aside.
    answer(&lab, "sig2", "q-001", "HS256", PERSON);
    let snap = lab.wait_until(60, "the work set aside", |s| {
        milestones(s, "demo/web-api/sig2")
            .iter()
            .any(|(_, t, _)| t.starts_with("↩ q-001"))
    });
    let q = question(&snap, "demo/web-api/sig2", "q-001").unwrap();
    assert_eq!(q.state, QuestionState::Overridden);
    assert_eq!(q.decision.as_ref().unwrap().choice, ["HS256"]);
    assert_eq!(
        git(&worktree(&lab), &["branch", "--show-current"]),
        "gaffer/sig2"
    );
    assert!(
        !worktree(&lab).join("app/signing.txt").exists(),
        "the worktree's files went back to the question point"
    );
    assert!(has(
        &lab,
        "gaffer-provisional/sig2/q-001",
        "app/signing.txt"
    ));
    // The agent is told the answer and where its work went, once.
    lab.wait_llm(60, "the agent told", |log| {
        log.iter().any(|l| {
            l.last_user
                .contains("A person answered your earlier question")
        })
    });
    let told = lab
        .llm
        .log_of(key)
        .into_iter()
        .find(|l| l.last_user.contains("A person answered"))
        .unwrap()
        .last_user;
    assert!(told.contains("HS256"), "{told}");
    assert!(told.contains("gaffer-provisional/sig2/q-001"), "{told}");
    lab.wait_until(120, "promoted", |s| {
        phase_of(s, "demo/web-api/sig2") == Some(Phase::Promoted)
    });
    assert_eq!(user_messages_with(&lab.llm, key, "A person answered"), 1);
    assert!(!has(&lab, "gaffer/sig2", "app/signing.txt"));
    assert!(has(&lab, "gaffer/sig2", "app/fixed-sig2.txt"));
}

/// Applying a different answer (stop the turn, set the work aside, reset the worktree,
/// prompt, commit status) with the reconciler SIGKILLed at `point` and started again: the
/// agent is told once and its reply is not cut off, the provisional work stays on its
/// branch, which never moves onto the work done for the person's answer.
fn a_different_answer_is_applied_once_across_a_sigkill_at(t: &str, point: &str) {
    let lab = Lab::build(&["web-api"], "1h", "immediately", "");
    let key = format!("Crash at {point}");
    lab.add_task("web-api", t, &key, signing_steps(t));
    let mut d = lab.daemon_env(&[(gaffer::crash::ENV, point)]);
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let task_ref = format!("demo/web-api/{t}");
    lab.wait_until(60, "the edit after the question checkpointed", |s| {
        milestones(s, &task_ref)
            .iter()
            .any(|(_, m, _)| m.contains("edited repos/web-api/app/signing.txt"))
    });
    answer(&lab, t, "q-001", "HS256", PERSON);
    let status = d.wait_exit(60);
    assert!(!status.success(), "{status:?}");
    assert!(
        lab.daemon_log()
            .contains(&format!("{}={point}: killing", gaffer::crash::ENV)),
        "the reconciler died at {point}"
    );
    let _d = lab.daemon();
    assert_applied_once(&lab, t, &key);
}

/// The task promoted with the person's answer, told to the agent once, and the provisional
/// work kept on its branch, which did not move.
fn assert_applied_once(lab: &Lab, t: &str, key: &str) {
    let task_ref = format!("demo/web-api/{t}");
    lab.wait_until(180, "promoted", |s| {
        phase_of(s, &task_ref) == Some(Phase::Promoted)
    });
    assert_eq!(user_messages_with(&lab.llm, key, "A person answered"), 1);
    let provisional = format!("gaffer-provisional/{t}/q-001");
    assert!(
        has(lab, &provisional, "app/signing.txt"),
        "the provisional work is kept"
    );
    assert!(
        !has(lab, &provisional, &format!("app/fixed-{t}.txt")),
        "the set-aside branch did not move onto the work done for the answer"
    );
    let branch = format!("gaffer/{t}");
    assert!(!has(lab, &branch, "app/signing.txt"));
    assert!(has(lab, &branch, &format!("app/fixed-{t}.txt")));
    let q = question(&lab.snapshot(), &task_ref, "q-001").unwrap();
    assert_eq!(q.state, QuestionState::Overridden);
}

#[test]
fn a_different_answer_is_applied_once_while_the_state_remote_refuses_writes_for_longer_than_the_writer_retries()
 {
    let lab = Lab::build(&["web-api"], "1h", "immediately", "");
    let (t, key) = ("outage", "Write outage");
    lab.add_task("web-api", t, key, signing_steps(t));
    // A URL remote, as on GitHub: gaffer fetches and pushes with git, so the remote's
    // hooks see every write.
    let url = format!("file://localhost{}", lab.state.display());
    let _d = lab.daemon_at(&url, &[]);
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    lab.wait_until(60, "the edit after the question checkpointed", |s| {
        milestones(s, "demo/web-api/outage")
            .iter()
            .any(|(_, m, _)| m.contains("edited repos/web-api/app/signing.txt"))
    });
    // From now on the state remote refuses every push; the person's answer still lands.
    let hook = lab.state.join("hooks/pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'test outage: writes refused' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    answer(&lab, t, "q-001", "HS256", PERSON);
    lab.wait_llm(60, "the agent told", |log| {
        log.iter()
            .any(|l| l.last_user.contains("A person answered"))
    });
    // The writer gives up twice: the step that told the agent ran again after its status
    // write failed, and repeated nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    while lab
        .daemon_log()
        .matches("status writer could not publish")
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "{}", lab.daemon_log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(user_messages_with(&lab.llm, key, "A person answered"), 1);
    std::fs::remove_file(&hook).unwrap();
    assert_applied_once(&lab, t, key);
}

#[test]
fn a_different_answer_survives_sigkill_after_the_turn_is_stopped() {
    a_different_answer_is_applied_once_across_a_sigkill_at("kstop", "override:stopped");
}

#[test]
fn a_different_answer_survives_sigkill_after_the_work_is_set_aside() {
    a_different_answer_is_applied_once_across_a_sigkill_at("kaside", "override:set-aside");
}

#[test]
fn a_different_answer_survives_sigkill_after_the_worktree_is_reset() {
    a_different_answer_is_applied_once_across_a_sigkill_at("kreset", "override:reset");
}

#[test]
fn a_different_answer_survives_sigkill_after_the_prompt_before_the_status_commit() {
    a_different_answer_is_applied_once_across_a_sigkill_at("kprompt", "override:prompted");
}

#[test]
fn at_the_deadline_the_recommended_option_is_confirmed_and_a_late_answer_still_overrides() {
    let lab = Lab::build(&["web-api"], "3s", "immediately", "");
    let key = "Signing deadline";
    lab.add_task("web-api", "sig3", key, signing_steps("sig3"));
    let _d = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let snap = lab.wait_until(60, "q-001 defaulted and its work on gaffer/sig3", |s| {
        question(s, "demo/web-api/sig3", "q-001")
            .is_some_and(|q| q.state == QuestionState::Defaulted)
            && milestones(s, "demo/web-api/sig3")
                .iter()
                .any(|(_, t, _)| t.contains("q-001 confirmed"))
            && milestones(s, "demo/web-api/sig3")
                .iter()
                .any(|(_, t, _)| t.contains("edited repos/web-api/app/signing.txt"))
    });
    let q = question(&snap, "demo/web-api/sig3", "q-001").unwrap();
    assert_eq!(q.decision.unwrap().decided_by, DecidedBy::TimeoutDefault);
    assert!(has(&lab, "gaffer/sig3", "app/signing.txt"));

    answer(&lab, "sig3", "q-001", "HS256", PERSON);
    let snap = lab.wait_until(60, "the late answer applied", |s| {
        milestones(s, "demo/web-api/sig3")
            .iter()
            .any(|(_, t, _)| t.starts_with("↩ q-001"))
    });
    let q = question(&snap, "demo/web-api/sig3", "q-001").unwrap();
    assert_eq!(q.state, QuestionState::Overridden);
    assert_eq!(q.decision.unwrap().decided_by, DecidedBy::Human);
    assert!(!worktree(&lab).join("app/signing.txt").exists());
    assert!(!has(&lab, "gaffer/sig3", "app/signing.txt"));
    assert!(has(
        &lab,
        "gaffer-provisional/sig3/q-001",
        "app/signing.txt"
    ));
    lab.wait_until(120, "promoted", |s| {
        phase_of(s, "demo/web-api/sig3") == Some(Phase::Promoted)
    });
    assert_eq!(user_messages_with(&lab.llm, key, "A person answered"), 1);
}

#[test]
fn permission_requests_are_questions_answered_reject_and_once() {
    let lab = Lab::build(&["web-api"], "1h", "at-deadline", "");
    // This project asks before running commands.
    let project = git(
        &lab.state,
        &["show", "main:projects/demo/web-api/project.yaml"],
    )
    .replace(
        "    - {permission: \"*\", action: allow}",
        "    - {permission: \"*\", action: allow}\n    - {permission: bash, action: ask}",
    );
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[("projects/demo/web-api/project.yaml", project.as_str())],
        "ask for bash",
    );
    let key = "Permission check";
    lab.add_task(
        "web-api",
        "perm",
        key,
        vec![
            Step::tool(
                "bash",
                json!({"command": "touch repos/web-api/ran-rejected.txt", "description": "make a file"}),
            ),
            Step::tool(
                "bash",
                json!({"command": "touch repos/web-api/ran-once.txt repos/web-api/app/fixed-perm.txt", "description": "make files"}),
            ),
            Step::text("DONE: commands run"),
        ],
    );
    let _d = lab.daemon();
    let snap = lab.wait_until(120, "the first permission question", |s| {
        question(s, "demo/web-api/perm", "q-001").is_some()
    });
    let q = question(&snap, "demo/web-api/perm", "q-001").unwrap();
    assert_eq!(q.kind, QuestionKind::Permission);
    assert_eq!(q.state, QuestionState::Open);
    let labels: Vec<&str> = q.options.iter().map(|o| o.label.as_str()).collect();
    assert_eq!(labels, ["once", "always", "reject"]);
    assert_eq!(q.recommended, "once", "the project's permission_default");
    assert!(q.text.contains("ran-rejected.txt"), "{}", q.text);
    assert_eq!(
        phase_of(&snap, "demo/web-api/perm"),
        Some(Phase::AwaitingAnswer)
    );
    answer(&lab, "perm", "q-001", "reject", PERSON);
    lab.wait_until(120, "the second permission question", |s| {
        question(s, "demo/web-api/perm", "q-002").is_some()
    });
    answer(&lab, "perm", "q-002", "once", PERSON);
    lab.wait_until(120, "promoted", |s| {
        phase_of(s, "demo/web-api/perm") == Some(Phase::Promoted)
    });
    assert!(
        !has(&lab, "gaffer/perm", "ran-rejected.txt"),
        "rejected: never ran"
    );
    assert!(
        has(&lab, "gaffer/perm", "ran-once.txt"),
        "allowed once: ran"
    );
}

#[test]
fn answers_arrive_once_when_gaffer_or_opencode_was_killed_while_a_question_waited() {
    let lab = Lab::build(&["web-api"], "1h", "at-deadline", "");
    let key = "Survive kills";
    lab.add_task(
        "web-api",
        "kills",
        key,
        vec![
            ask(SIGNING, &["RS256 (Recommended)", "HS256"]),
            Step {
                text: Some("Noted.".into()),
                tools: vec![(
                    "question".into(),
                    json!({"questions": [{"question": "Which token lifetime?", "header": "Lifetime",
                        "options": [{"label": "15m (Recommended)", "description": "short"}, {"label": "1h", "description": "long"}]}]}),
                )],
                ..Step::default()
            },
            Step::text("I will wait for the answer."),
            write("repos/web-api/app/fixed-kills.txt", "applied\n"),
            Step::text("DONE: answers applied"),
        ],
    );
    let d = lab.daemon();
    lab.wait_until(120, "q-001 waiting", |s| {
        question(s, "demo/web-api/kills", "q-001").is_some()
    });
    // gaffer dies while the question waits; the answer is committed meanwhile.
    drop(d);
    answer(&lab, "kills", "q-001", "HS256", PERSON);
    let _d = lab.daemon();
    lab.wait_llm(120, "the answer relayed", |log| {
        log.iter().any(|l| l.step == 1)
    });
    let step1 = lab
        .llm
        .log_of(key)
        .into_iter()
        .find(|l| l.step == 1)
        .unwrap();
    assert!(
        step1.tool_texts.iter().any(|t| t.contains("HS256")),
        "{step1:?}"
    );

    // OpenCode dies while q-002 waits: it forgets the question; gaffer does not.
    let snap = lab.wait_until(120, "q-002 waiting", |s| {
        question(s, "demo/web-api/kills", "q-002").is_some()
    });
    assert!(
        question(&snap, "demo/web-api/kills", "q-002")
            .unwrap()
            .request_id
            .is_some()
    );
    let server = lab.world.pane_pid("gaffer-demo-web-api", "server").unwrap();
    kill9(server);
    lab.wait_llm(120, "the resumed turn", |log| {
        log.iter().any(|l| l.last_user.contains("was restarted"))
    });
    answer(&lab, "kills", "q-002", "1h", PERSON);
    lab.wait_until(180, "promoted", |s| {
        phase_of(s, "demo/web-api/kills") == Some(Phase::Promoted)
    });
    assert_eq!(
        user_messages_with(
            &lab.llm,
            key,
            "was lost when OpenCode restarted. The answer is: 1h"
        ),
        1
    );
    let steps: Vec<usize> = lab.llm.log_of(key).iter().map(|l| l.step).collect();
    assert_eq!(
        steps.iter().filter(|s| **s == 1).count(),
        1,
        "the first answer reached OpenCode once: {steps:?}"
    );
}

/// A clone of the state repo where a person edits files and commits with plain git.
pub(crate) fn person_clone(lab: &Lab) -> std::path::PathBuf {
    let dir = lab.tmp.path().join("person");
    if !dir.exists() {
        let out = std::process::Command::new("git")
            .args(["clone", "-q", lab.state.to_str().unwrap()])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    git(&dir, &["pull", "-q", "--rebase"]);
    dir
}

pub(crate) fn person_commit(dir: &std::path::Path, message: &str) {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap()
    };
    let email = format!("user.email={PERSON}");
    let out = run(&[
        "-c",
        "user.name=You",
        "-c",
        &email,
        "commit",
        "-qam",
        message,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As a person would: the reconciler may have pushed meanwhile, so rebase and push again.
    for _ in 0..20 {
        let _ = run(&[
            "-c",
            "user.name=You",
            "-c",
            &email,
            "pull",
            "-q",
            "--rebase",
        ]);
        if run(&["push", "-q", "origin", "HEAD:main"]).status.success() {
            return;
        }
    }
    panic!("could not push");
}

#[test]
fn several_questions_at_once_become_a_document_whose_annotations_are_answers() {
    let lab = Lab::build(&["web-api"], "1h", "at-deadline", "");
    let key = "Three decisions";
    let q = |text: &str, header: &str, options: &[&str]| {
        json!({"question": text, "header": header,
            "options": options.iter().map(|o| json!({"label": o, "description": format!("use {o}")})).collect::<Vec<_>>()})
    };
    lab.add_task(
        "web-api",
        "docs",
        key,
        vec![
            Step::tool(
                "question",
                json!({"questions": [
                    q(SIGNING, "Signing", &["RS256 (Recommended)", "HS256"]),
                    q("How long should tokens live?", "Lifetime", &["15m (Recommended)", "1h"]),
                    q("Where do refresh tokens go?", "Refresh", &["Cookie (Recommended)", "Header"]),
                ]}),
            ),
            write("repos/web-api/app/fixed-docs.txt", "decided\n"),
            Step::text("DONE: decisions applied"),
        ],
    );
    let _d = lab.daemon();
    let doc_path = "projects/demo/web-api/tasks/docs/questions/batch-001.md";
    lab.wait_until(120, "the question document", |s| {
        s.task(&task("demo/web-api/docs"))
            .is_some_and(|e| !e.question_docs.is_empty())
    });
    let dir = person_clone(&lab);
    let text = std::fs::read_to_string(dir.join(doc_path)).unwrap();
    for qid in ["q-001", "q-002", "q-003"] {
        assert!(text.contains(&format!("## {qid} · ")), "{text}");
    }
    assert!(text.contains("• [ ] HS256 — use HS256"), "{text}");

    // Two boxes on a single-choice question: a located error, nothing answered.
    let bad = text
        .replace("• [ ] RS256 (Recommended)", "• [x] RS256 (Recommended)")
        .replace("• [ ] HS256", "• [x] HS256");
    std::fs::write(dir.join(doc_path), &bad).unwrap();
    person_commit(&dir, "answer the builder");
    let snap = lab.wait_until(60, "the annotation refused", |s| {
        question(s, "demo/web-api/docs", "q-001").is_some_and(|q| !q.problems.is_empty())
    });
    let q1 = question(&snap, "demo/web-api/docs", "q-001").unwrap();
    assert!(
        q1.problems[0].starts_with(&format!("{doc_path}:lines ")),
        "{:?}",
        q1.problems
    );
    assert!(
        q1.problems[0].contains("2 boxes ticked"),
        "{:?}",
        q1.problems
    );
    assert!(q1.decision.is_none());

    // Fixed: one box for q-001 and q-002, free text for q-003.
    let good = text
        .replace("• [ ] HS256", "• [x] HS256")
        .replace("• [ ] 1h", "• [x] 1h");
    let mut parts: Vec<String> = good.split("## ").map(str::to_string).collect();
    parts[1] = parts[1].replace(
        "Details: ",
        "Details: the gateway already holds a shared secret",
    );
    parts[3] = parts[3].replace("Details: ", "Details: in the mobile app's keychain");
    std::fs::write(dir.join(doc_path), parts.join("## ")).unwrap();
    person_commit(&dir, "answer the builder, properly");
    let snap = lab.wait_until(120, "promoted", |s| {
        phase_of(s, "demo/web-api/docs") == Some(Phase::Promoted)
    });
    let d1 = question(&snap, "demo/web-api/docs", "q-001")
        .unwrap()
        .decision
        .unwrap();
    assert_eq!(d1.choice, ["HS256"]);
    assert_eq!(
        d1.note.as_deref(),
        Some("the gateway already holds a shared secret")
    );
    assert_eq!(d1.by.as_deref(), Some(PERSON));
    let d3 = question(&snap, "demo/web-api/docs", "q-003")
        .unwrap()
        .decision
        .unwrap();
    assert_eq!(d3.choice, ["in the mobile app's keychain"]);
    // OpenCode got the three answers together, once.
    let step1: Vec<_> = lab
        .llm
        .log_of(key)
        .into_iter()
        .filter(|l| l.step == 1)
        .collect();
    assert_eq!(step1.len(), 1);
    let result = step1[0].tool_texts.join("\n");
    for a in ["HS256", "1h", "in the mobile app's keychain"] {
        assert!(result.contains(a), "{result}");
    }
}

/// A reconciler running in this process (so the clock can be injected) on a state repo with
/// one project, built by the scripted agent playing `script`, and one task `demo/web-api/<task>`.
struct InProcess {
    tmp: tempfile::TempDir,
    task: TaskRef,
    ctx: std::sync::Arc<gaffer::reconcile::Context>,
    handles: gaffer::reconcile::daemon::Handles,
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<Result<(), gaffer::reconcile::ReconcileError>>,
}

impl InProcess {
    /// `settings` is gaffer.yaml without its `domain` and `authors` lines.
    async fn start(
        script: &str,
        settings: &str,
        task_name: &str,
        clock: std::sync::Arc<dyn gaffer::hours::Clock>,
        tune: impl FnOnce(&mut gaffer::reconcile::daemon::Options),
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin.git");
        let mut app = gaffer::cli::demo::sample_app();
        app.push((
            ".gaffer/script.yaml".into(),
            Some(script.as_bytes().to_vec()),
        ));
        gaffer::cli::demo::bare_repo_with(&origin, &app, "app").unwrap();
        let state = tmp.path().join("state.git");
        let settings = format!(
            "domain: lab.example.com\n{settings}authors: {{answers: [{PERSON}], accept_unsigned: true}}\n"
        );
        let project = format!(
            "repos:\n  - {{name: web-api, url: {}}}\nagent: {{runtime: scripted, script: web-api/.gaffer/script.yaml}}\n",
            json!(origin.display().to_string())
        );
        gaffer::cli::demo::bare_repo_with(
            &state,
            &[
                ("gaffer.yaml".into(), Some(settings.into_bytes())),
                (
                    "projects/demo/web-api/project.yaml".into(),
                    Some(project.into_bytes()),
                ),
                (
                    format!("projects/demo/web-api/tasks/{task_name}/task.yaml"),
                    Some(format!("title: {task_name}\n").into_bytes()),
                ),
            ],
            "state",
        )
        .unwrap();
        let mut opts = gaffer::reconcile::daemon::Options::new(
            state.display().to_string(),
            tmp.path().join("data"),
        );
        opts.builders = tmp.path().join("builders");
        opts.lab = gaffer::reconcile::daemon::LabMode::RenderOnly;
        tune(&mut opts);
        let (ctx, handles, rx) = gaffer::reconcile::daemon::start(&opts, clock, None)
            .await
            .unwrap();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(gaffer::reconcile::daemon::run(
            opts,
            ctx.clone(),
            handles.clone(),
            rx,
            async {
                let _ = stop_rx.await;
            },
        ));
        InProcess {
            task: task(&format!("demo/web-api/{task_name}")),
            tmp,
            ctx,
            handles,
            stop,
            run,
        }
    }

    /// The task as the reconciler sees it.
    fn entry(&self) -> Option<gaffer::state::snapshot::TaskEntry> {
        let tr = self.handles.tracker.read().unwrap();
        tr.snapshot().task(&self.task).cloned()
    }

    fn question(&self, qid: &str) -> Option<Question> {
        let q = Qid::new(qid).unwrap();
        self.entry()
            .and_then(|e| e.questions.get(&q).map(|q| (**q).clone()))
    }

    /// Waits (polling, with a deadline) until `f` holds for the task.
    async fn wait<T>(
        &self,
        what: &str,
        f: impl Fn(&gaffer::state::snapshot::TaskEntry) -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(v) = self.entry().as_ref().and_then(&f) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                self.entry()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Wakes the task and waits until `n` reconciles have finished since, so at least one
    /// started after the wake-up.
    async fn poke(&self, n: u64) {
        use std::sync::atomic::Ordering;
        let before = self.ctx.metrics.reconciles.load(Ordering::Relaxed);
        self.ctx
            .scheduler
            .now(gaffer::state::path::ObjectKey::Task(self.task.clone()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.ctx.metrics.reconciles.load(Ordering::Relaxed) < before + n {
            assert!(
                std::time::Instant::now() < deadline,
                "no reconcile after the wake-up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.run.await.unwrap().unwrap();
    }
}

/// Business hours Mon–Fri 09:00–17:30 Europe/London, 2h timeout, going on at once.
const OFFICE: &str = "business_hours: {timezone: Europe/London, days: [mon, tue, wed, thu, fri], start: \"09:00\", end: \"17:30\"}\n\
                      questions: {timeout: 2h, on_timeout: recommended, continue: immediately}\n";

/// Deadlines count business hours, with an injected clock: asked Friday 16:30 (BST) with a
/// 2h timeout and hours 09:00–17:30 Mon–Fri, it falls due Monday 10:00 — after the weekend in
/// which the UK clocks went back — and only then is the recommended option confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_count_business_hours_across_a_weekend_and_a_clock_change() {
    let friday: jiff::Timestamp = "2026-10-23T15:30:00Z".parse().unwrap(); // 16:30 BST
    let clock = std::sync::Arc::new(gaffer::hours::ManualClock::new(friday));
    let lab = InProcess::start(
        "steps:\n  - question: {text: Which algorithm?, header: Signing, options: [{label: RS256 (Recommended)}, {label: HS256}]}\n  - done: chosen\n",
        OFFICE,
        "dl",
        clock.clone(),
        |_| {},
    )
    .await;
    let q = lab.wait("the question", |_| lab.question("q-001")).await;
    assert_eq!(q.asked_at, friday);
    let monday_ten: jiff::Timestamp = "2026-10-26T10:00:00Z".parse().unwrap(); // 10:00 GMT
    assert_eq!(q.deadline, Some(monday_ten));
    assert_eq!(q.state, QuestionState::Provisional);

    // A minute before: nothing happens, however often the task is looked at.
    clock.set("2026-10-26T09:59:00Z".parse().unwrap());
    lab.poke(3).await;
    assert_eq!(
        lab.question("q-001").unwrap().state,
        QuestionState::Provisional
    );
    // At the deadline: the recommended option is confirmed as the timeout default.
    clock.set(monday_ten);
    lab.poke(1).await;
    let q = lab
        .wait("the default", |_| {
            lab.question("q-001")
                .filter(|q| q.state == QuestionState::Defaulted)
        })
        .await;
    let d = q.decision.unwrap();
    assert_eq!(d.decided_by, DecidedBy::TimeoutDefault);
    assert_eq!(d.choice, ["RS256 (Recommended)"]);
    assert_eq!(d.at, monday_ten);
    lab.stop().await;
}

/// Two nested provisional questions that fall due together are confirmed in one step: the
/// task branch takes all the work and the worktree ends on it, not on a provisional branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_questions_defaulted_together_leave_the_work_on_the_task_branch() {
    let friday: jiff::Timestamp = "2026-10-23T15:30:00Z".parse().unwrap();
    let clock = std::sync::Arc::new(gaffer::hours::ManualClock::new(friday));
    let lab = InProcess::start(
        "steps:\n  - question: {text: Which algorithm?, header: Signing, options: [{label: RS256 (Recommended)}, {label: HS256}]}\n  - write: {path: web-api/a.txt, content: a}\n  - question: {text: Which lifetime?, header: Lifetime, options: [{label: 15m (Recommended)}, {label: 1h}]}\n  - write: {path: web-api/b.txt, content: b}\n  - done: chosen\n",
        OFFICE,
        "nd",
        clock.clone(),
        |_| {},
    )
    .await;
    lab.wait("the agent done, waiting on provisional answers", |e| {
        (e.status.as_ref()?.reason.as_deref() == Some("ProvisionalWork")).then_some(())
    })
    .await;
    let wt = lab.tmp.path().join("builders/demo-web-api/repos/web-api");
    assert_eq!(
        git(&wt, &["branch", "--show-current"]),
        "gaffer-provisional/nd/q-002",
        "the work went on on the inner provisional branch"
    );
    clock.set("2026-10-26T10:00:00Z".parse().unwrap());
    lab.poke(1).await;
    lab.wait("both defaulted", |_| {
        let both = [lab.question("q-001")?, lab.question("q-002")?];
        both.iter()
            .all(|q| q.state == QuestionState::Defaulted)
            .then_some(())
    })
    .await;
    // The step that recorded the defaults did its git work before committing.
    assert_eq!(git(&wt, &["branch", "--show-current"]), "gaffer/nd");
    assert_eq!(git(&wt, &["show", "gaffer/nd:a.txt"]), "a");
    assert_eq!(git(&wt, &["show", "gaffer/nd:b.txt"]), "b");
    lab.stop().await;
}

/// A transient agent error (overloaded, rate limited) is retried after a pause, with a
/// milestone; the task then goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_agent_error_is_retried_after_a_pause() {
    let lab = InProcess::start(
        "steps:\n  - todo: Start\n  - fail: {message: model overloaded, retryable: true}\n  - done: finished after the retry\n",
        "",
        "rt",
        std::sync::Arc::new(gaffer::hours::SystemClock),
        |o| o.retry_pause = std::time::Duration::from_millis(200),
    )
    .await;
    let (st, progress) = lab
        .wait("the work after the retry", |e| {
            let p = e.progress.clone()?;
            p.milestones
                .iter()
                .any(|m| m.text.contains("finished after the retry"))
                .then(|| (e.status.as_deref().cloned(), p))
        })
        .await;
    let st = st.unwrap();
    let texts: Vec<&str> = progress
        .milestones
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    let warn = texts
        .iter()
        .position(|t| *t == "⚠ model overloaded (retrying in 200ms)")
        .unwrap_or_else(|| panic!("{texts:#?}"));
    let warned_at = progress.milestones[warn].at;
    let done = progress
        .milestones
        .iter()
        .find(|m| m.text.contains("finished after the retry"))
        .unwrap();
    assert!(
        done.at.duration_since(warned_at) >= jiff::SignedDuration::from_millis(200),
        "the retry waited for its pause"
    );
    assert_eq!(st.attempts, 1);
    assert!(
        st.agent
            .unwrap()
            .prompts_sent
            .contains(&"retry-1".to_string())
    );
    assert_ne!(st.phase, Phase::Failed);
    lab.stop().await;
}
