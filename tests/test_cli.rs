//! `gaffer init` and `gaffer new task` against real bare repositories.

use crate::common::{commit_to_bare, gaffer, git, run};

const PROJECT: &str = "repos:\n  - {name: app, url: \"https://example.com/app.git\"}\n";

fn init_state() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.git");
    let r = run(gaffer(tmp.path())
        .arg("init")
        .arg(&state)
        .args(["--domain", "lab.example.com"]));
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("created state repository"),
        "{}",
        r.stdout
    );
    commit_to_bare(
        &state,
        "main",
        &[("projects/ai-dev/api/project.yaml", PROJECT)],
        "add project",
    );
    (tmp, state)
}

#[test]
fn init_makes_a_valid_state_repo() {
    let (tmp, state) = init_state();
    let files = git(&state, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(files.lines().any(|l| l == "gaffer.yaml"), "{files}");
    assert!(files.lines().any(|l| l == "README.md"));
    assert!(files.lines().any(|l| l == "schema/task.schema.json"));
    // A checkout of it validates.
    let work = tmp.path().join("work");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            state.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let r = run(gaffer(tmp.path()).arg("validate").arg(&work));
    assert_eq!(r.code, Some(0), "{}", r.stdout);
    // Refuses to overwrite.
    let r = run(gaffer(tmp.path()).arg("init").arg(&state));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
}

#[test]
fn new_task_commits_a_valid_task() {
    let (tmp, state) = init_state();
    let r = run(gaffer(tmp.path()).args([
        "new",
        "task",
        "ai-dev/api/jwt-auth",
        "--title",
        "Implement JWT authentication",
        "--description",
        "Add JWT auth; reject $(rm -rf /) style input as data",
        "--priority",
        "high",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let text = git(
        &state,
        &["show", "main:projects/ai-dev/api/tasks/jwt-auth/task.yaml"],
    );
    let spec: gaffer::state::spec::TaskSpec = gaffer::state::yaml::parse(text.as_bytes()).unwrap();
    assert_eq!(spec.title, "Implement JWT authentication");
    assert_eq!(spec.priority, gaffer::state::spec::Priority::High);
    assert!(spec.description.contains("$(rm -rf /)"));
    let log = git(&state, &["log", "--format=%s", "main"]);
    assert_eq!(
        log.lines().next(),
        Some("gaffer: new task ai-dev/api/jwt-auth")
    );

    // The same task again is refused and nothing is committed.
    let before = git(&state, &["rev-parse", "main"]);
    let r = run(gaffer(tmp.path()).args([
        "new",
        "task",
        "ai-dev/api/jwt-auth",
        "--title",
        "again",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(git(&state, &["rev-parse", "main"]), before);
}

#[test]
fn new_task_refuses_bad_input() {
    let (tmp, state) = init_state();
    let before = git(&state, &["rev-parse", "main"]);
    let cases: &[(&str, &str)] = &[
        ("ai-dev/api/../etc", "expected CATEGORY/PROJECT/TASK"),
        ("ai-dev/api/Bad Name", "invalid task \"Bad Name\""),
        ("ai-dev/api/x;rm", "contains the character ';'"),
        ("ai-dev/api", "expected CATEGORY/PROJECT/TASK"),
        ("ai-dev/nope/task", "project ai-dev/nope does not exist"),
    ];
    for (task, want) in cases {
        let r = run(gaffer(tmp.path()).args([
            "new",
            "task",
            task,
            "--title",
            "x",
            "--state",
            state.to_str().unwrap(),
        ]));
        assert_eq!(r.code, Some(1), "{task}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{task}: {}", r.stderr);
    }
    let long = format!("ai-dev/api/{}", "t".repeat(51));
    let r = run(gaffer(tmp.path()).args([
        "new",
        "task",
        &long,
        "--title",
        "x",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert!(r.stderr.contains("the limit is 50"), "{}", r.stderr);
    let r = run(gaffer(tmp.path()).args([
        "new",
        "task",
        "ai-dev/api/ok",
        "--title",
        " ",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert!(
        r.stderr.contains("--title must not be empty"),
        "{}",
        r.stderr
    );
    let r = run(gaffer(tmp.path()).args([
        "new",
        "task",
        "ai-dev/api/ok",
        "--title",
        "x",
        "--priority",
        "asap",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(
        git(&state, &["rev-parse", "main"]),
        before,
        "nothing committed"
    );
}

#[test]
fn concurrent_new_tasks_all_land() {
    let (tmp, state) = init_state();
    let children: Vec<_> = (0..6)
        .map(|i| {
            gaffer(tmp.path())
                .args([
                    "new",
                    "task",
                    &format!("ai-dev/api/task-{i}"),
                    "--title",
                    &format!("Task {i}"),
                ])
                .args(["--state", state.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let files = git(&state, &["ls-tree", "-r", "--name-only", "main"]);
    for i in 0..6 {
        assert!(
            files.contains(&format!("tasks/task-{i}/task.yaml")),
            "task-{i} lost:\n{files}"
        );
    }
}

/// A bare state repo holding the example state repository.
fn example_remote(tmp: &std::path::Path) -> std::path::PathBuf {
    let state = tmp.join("example.git");
    git(
        tmp,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            state.to_str().unwrap(),
        ],
    );
    let (files, _) =
        gaffer::validate::load_dir(&crate::common::root().join("example-state-repo")).unwrap();
    let owned: Vec<(String, String)> = files
        .into_iter()
        .map(|(p, c)| match c {
            gaffer::state::snapshot::RawContent::Blob(b) => (p, String::from_utf8(b).unwrap()),
            other => panic!("{p}: {other:?}"),
        })
        .collect();
    let refs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    commit_to_bare(&state, "main", &refs, "example");
    state
}

#[test]
fn status_shows_tasks_and_open_questions() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let r = run(gaffer(tmp.path()).args(["status", "--state", state.to_str().unwrap()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    insta::assert_snapshot!(r.stdout);
    let r = run(gaffer(tmp.path()).args([
        "status",
        "--output",
        "json",
        "--state",
        state.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 6);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
    let planned = &v["tasks"][5];
    assert_eq!(planned["plan"]["waiting"], true, "{planned}");
    assert_eq!(planned["plan"]["version"], 1);
    let r = run(gaffer(tmp.path()).args(["status", "--state", "/nonexistent/state.git"]));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("cannot read /nonexistent/state.git"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_plan_is_shown_and_approved_or_sent_back_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let t = "ai-dev/proj-frontend/search-page";
    let r = run(gaffer(tmp.path()).args(["plan", "show", t, "--state", s]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with(&format!("{t} plan v1 — spec (quick), AwaitingApproval")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("=== specs/spec-search-page/SPEC.md ===\n# Spec: search page"),
        "{}",
        r.stdout
    );
    // A task without a plan, and a plan not waiting, are refused with why; nothing committed.
    let before = git(&state, &["rev-parse", "main"]);
    let r = run(gaffer(tmp.path()).args([
        "plan",
        "show",
        "ai-dev/proj-frontend/dark-mode",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("has no plan yet"), "{}", r.stderr);
    let r = run(gaffer(tmp.path()).args([
        "approve",
        "--plan",
        "ai-dev/proj-frontend/dark-mode",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("the task has no plan"), "{}", r.stderr);
    let r = run(gaffer(tmp.path()).args(["approve", "--plan", t, "--changes", " ", "--state", s]));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("say which changes you want"),
        "{}",
        r.stderr
    );
    assert_eq!(git(&state, &["rev-parse", "main"]), before);
    // Changes, then an approval: each names version 1.
    let r = run(gaffer(tmp.path()).args([
        "approve",
        "--plan",
        t,
        "--changes",
        "Search titles only.",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(gaffer(tmp.path()).args(["approve", "--plan", t, "--state", s]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let files = git(
        &state,
        &[
            "ls-tree",
            "--name-only",
            "main",
            "projects/ai-dev/proj-frontend/tasks/search-page/approvals/",
        ],
    );
    let names: Vec<&str> = files
        .lines()
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{files}");
    assert!(
        names.iter().any(|n| n.starts_with("plan-1-changes-cli-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("plan-1-ok-cli-")),
        "{names:?}"
    );
    let snap = crate::common::snapshot_of(&state, &tmp.path().join("ro"));
    let task = gaffer::names::TaskRef::parse(t).unwrap();
    let entry = snap.task(&task).unwrap();
    let mut decided: Vec<_> = entry
        .approvals
        .values()
        .map(|a| (a.plan, a.changes.clone()))
        .collect();
    decided.sort();
    assert_eq!(
        decided,
        [
            (Some(1), None),
            (Some(1), Some("Search titles only.".into()))
        ]
    );
}

#[test]
fn answer_and_approve_commit_spec_files_and_refuse_bad_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let before = git(&state, &["rev-parse", "main"]);
    let r = run(gaffer(tmp.path()).args([
        "answer",
        "ai-dev/proj-api-service/jwt-auth",
        "q-001",
        "ES256",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains(
            "\"ES256\" is not an option of q-001; the options are: RS256 (Recommended) | HS256"
        ),
        "{}",
        r.stderr
    );
    let r = run(gaffer(tmp.path()).args([
        "answer",
        "ai-dev/proj-api-service/jwt-auth",
        "q-404",
        "x",
        "--state",
        s,
    ]));
    assert!(r.stderr.contains("has no question q-404"), "{}", r.stderr);
    let r = run(gaffer(tmp.path()).args([
        "answer",
        "ai-dev/proj-api-service/jwt-auth",
        "q-002",
        "Postgres",
        "--by",
        "stranger@example.com",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains(
            "stranger@example.com is not listed in gaffer.yaml authors.answers, so the reconciler would ignore this answer"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(
        git(&state, &["rev-parse", "main"]),
        before,
        "nothing committed"
    );

    let r = run(gaffer(tmp.path()).args([
        "answer",
        "ai-dev/proj-api-service/jwt-auth",
        "q-002",
        "Postgres",
        "--note",
        "we run it already",
        "--by",
        "you@example.com",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = git(
        &state,
        &[
            "show",
            "main:projects/ai-dev/proj-api-service/tasks/jwt-auth/answers/q-002.yaml",
        ],
    );
    let a: gaffer::state::spec::AnswerSpec = gaffer::state::yaml::parse(text.as_bytes()).unwrap();
    assert_eq!(
        a.choice.unwrap().value,
        gaffer::state::spec::Choice::One("Postgres".into())
    );
    assert_eq!(a.by.as_deref(), Some("you@example.com"));
    assert_eq!(a.note.as_deref(), Some("we run it already"));

    let r = run(gaffer(tmp.path()).args([
        "approve",
        "ai-dev/proj-api-service/health-endpoint",
        "--by",
        "U0123",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let files = git(
        &state,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "main",
            "projects/ai-dev/proj-api-service/tasks/health-endpoint/approvals",
        ],
    );
    assert_eq!(files.lines().count(), 2, "{files}");
    // The repository is still valid.
    let work = tmp.path().join("w");
    git(tmp.path(), &["clone", "-q", s, work.to_str().unwrap()]);
    let r = run(gaffer(tmp.path()).arg("validate").arg(&work));
    assert_eq!(r.code, Some(0), "{}", r.stdout);
}

#[test]
fn questions_lists_what_waits_for_a_person_soonest_deadline_first() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let r = run(gaffer(tmp.path()).args(["questions", "--output", "json", "--state", s]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert!(!rows.is_empty());
    let deadlines: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["question"]["deadline"].as_str())
        .collect();
    assert!(!deadlines.is_empty());
    for r in rows {
        let q = &r["question"];
        assert!(
            matches!(q["state"].as_str(), Some("open" | "provisional")),
            "{q}"
        );
        let rec = q["recommended"].as_str().unwrap();
        assert!(
            q["options"].as_array().unwrap().iter().any(|o| o == rec),
            "{q}"
        );
    }
    let r = run(gaffer(tmp.path()).args(["questions", "--state", s]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let first = &rows[0];
    let hint = format!(
        "answer: gaffer answer {} {} {:?}",
        first["task"].as_str().unwrap(),
        first["question"]["qid"].as_str().unwrap(),
        first["question"]["recommended"].as_str().unwrap()
    );
    assert!(r.stdout.contains(&hint), "{}", r.stdout);
    assert!(r.stdout.contains("← recommended"), "{}", r.stdout);
    // The example's business hours are in Europe/London.
    assert!(
        r.stdout.contains(" GMT") || r.stdout.contains(" BST"),
        "{}",
        r.stdout
    );
}

#[test]
fn answer_is_signed_when_git_is_configured_to_sign_and_names_its_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let (key, line) = crate::common::ssh_key(tmp.path(), "you");
    std::fs::write(
        tmp.path().join("gitconfig"),
        format!(
            "[user]\n\tname = You\n\temail = you@example.com\n\tsigningkey = {}\n\
             [gpg]\n\tformat = ssh\n[commit]\n\tgpgsign = true\n",
            key.display()
        ),
    )
    .unwrap();
    let r = run(gaffer(tmp.path()).args([
        "answer",
        "ai-dev/proj-api-service/jwt-auth",
        "q-002",
        "Postgres",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let allowed = tmp.path().join("allowed_signers");
    std::fs::write(&allowed, format!("{line}\n")).unwrap();
    let config = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    let log = git(
        &state,
        &[
            "-c",
            &config,
            "log",
            "-1",
            "--format=%G?%n%GS%n%ae%n%s",
            "main",
        ],
    );
    assert_eq!(
        log,
        "G\nyou@example.com\nyou@example.com\nai-dev/proj-api-service/jwt-auth q-002 answered by you@example.com"
    );
    let text = git(
        &state,
        &[
            "show",
            "main:projects/ai-dev/proj-api-service/tasks/jwt-auth/answers/q-002.yaml",
        ],
    );
    assert!(text.contains("choice: Postgres"), "{text}");
}

#[test]
fn approve_names_the_round_and_heads_and_refuses_a_task_not_in_review() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let before = git(&state, &["rev-parse", "main"]);
    let r = run(gaffer(tmp.path()).args([
        "approve",
        "ai-dev/proj-api-service/jwt-auth",
        "--by",
        "you@example.com",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("cannot be approved: the task is AwaitingAnswer, not in review"),
        "{}",
        r.stderr
    );
    assert_eq!(
        git(&state, &["rev-parse", "main"]),
        before,
        "nothing committed"
    );
    let r = run(gaffer(tmp.path()).args([
        "approve",
        "ai-dev/proj-api-service/health-endpoint",
        "--by",
        "you@example.com",
        "--state",
        s,
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let dir = "projects/ai-dev/proj-api-service/tasks/health-endpoint";
    let status: gaffer::state::status::TaskStatus = gaffer::state::yaml::parse(
        git(&state, &["show", &format!("main:{dir}/status.yaml")]).as_bytes(),
    )
    .unwrap();
    let files = git(
        &state,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "main",
            &format!("{dir}/approvals"),
        ],
    );
    let newest = files.lines().find(|f| f.contains("cli-")).unwrap();
    let a: gaffer::state::spec::ApprovalSpec =
        gaffer::state::yaml::parse(git(&state, &["show", &format!("main:{newest}")]).as_bytes())
            .unwrap();
    let (round, heads) = status.review_target();
    assert_eq!((a.round, a.heads), (Some(round), heads));
}

#[test]
fn say_commits_a_message_for_a_running_task_and_refuses_a_finished_one() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let before = git(&state, &["rev-parse", "main"]);
    let say = |task: &str, text: &str, by: &str| {
        run(gaffer(tmp.path()).args(["say", task, text, "--by", by, "--state", s]))
    };
    // A finished task takes no messages; a stranger's would not be delivered; empty is not
    // a message.
    let r = say(
        "ai-dev/proj-frontend/dark-mode",
        "one more thing",
        "you@example.com",
    );
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(
        r.stderr.contains("takes no messages: the task is Promoted"),
        "{}",
        r.stderr
    );
    let r = say(
        "ai-dev/proj-api-service/jwt-auth",
        "hi",
        "stranger@example.com",
    );
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("not listed in gaffer.yaml authors.answers"),
        "{}",
        r.stderr
    );
    let r = say("ai-dev/proj-api-service/jwt-auth", "  ", "you@example.com");
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("non-empty `text`"), "{}", r.stderr);
    let r = say("ai-dev/proj-api-service/../x", "hi", "you@example.com");
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        git(&state, &["rev-parse", "main"]),
        before,
        "nothing committed"
    );

    let r = say(
        "ai-dev/proj-api-service/jwt-auth",
        "Keep the token lifetime at 15 minutes",
        "you@example.com",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("committed projects/ai-dev/proj-api-service/tasks/jwt-auth/messages/cli-"),
        "{}",
        r.stdout
    );
    let log = git(&state, &["log", "-1", "--format=%ae", "main"]);
    assert_eq!(log, "you@example.com");
    let files = git(
        &state,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "main",
            "projects/ai-dev/proj-api-service/tasks/jwt-auth/messages/",
        ],
    );
    let new: Vec<&str> = files.lines().filter(|f| f.contains("/cli-")).collect();
    assert_eq!(new.len(), 1, "{files}");
    let body = git(&state, &["show", &format!("main:{}", new[0])]);
    assert!(
        body.contains("text: Keep the token lifetime at 15 minutes")
            && body.contains("by: you@example.com"),
        "{body}"
    );
}

#[test]
fn usage_sums_the_state_by_project_task_and_day() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let usage = |args: &[&str]| {
        let mut c = gaffer(tmp.path());
        c.args(["usage", "--state", s, "--since", "3650d"])
            .args(args);
        run(&mut c)
    };
    let r = usage(&[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = r.stdout;
    assert!(text.contains("ai-dev/proj-api-service"), "{text}");
    assert!(text.contains("$0.7421"), "{text}");
    // A model without a price: unknown, never zero.
    let line = text
        .lines()
        .find(|l| l.starts_with("ai-dev/proj-frontend"))
        .unwrap();
    assert!(line.ends_with("unknown"), "{line}");
    assert!(
        text.contains("TOTAL") && text.contains("$0.7421 + unknown"),
        "{text}"
    );
    assert!(text.contains("2026-11-24  ████"), "{text}");
    let r = usage(&["--by", "day", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["rows"]["2026-11-24"]["requests"], 15);
    assert_eq!(v["rows"]["2026-11-25"]["requests"], 5);
    assert_eq!(v["total"]["requests"], 20);
    let r = usage(&["--by", "task"]);
    assert!(
        r.stdout.contains("ai-dev/proj-api-service/jwt-auth"),
        "{}",
        r.stdout
    );
    // Bad input: a located, clear error.
    let mut c = gaffer(tmp.path());
    let r = run(c.args(["usage", "--state", s, "--since", "a week"]));
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("is not a number of days like 7d"),
        "{}",
        r.stderr
    );
}

#[test]
fn budget_sets_the_tasks_budget_keeping_its_file_and_refuses_bad_amounts() {
    let tmp = tempfile::tempdir().unwrap();
    let state = example_remote(tmp.path());
    let s = state.to_str().unwrap();
    let before = git(&state, &["rev-parse", "main"]);
    let budget = |amount: &str, by: &str| {
        run(gaffer(tmp.path()).args([
            "budget",
            "ai-dev/proj-api-service/jwt-auth",
            "--set",
            amount,
            "--by",
            by,
            "--state",
            s,
        ]))
    };
    for bad in ["$-5", "lots", "0"] {
        let r = budget(bad, "you@example.com");
        assert_eq!(r.code, Some(1), "{bad}: {}", r.stdout);
        assert!(r.stderr.contains("budget"), "{bad}: {}", r.stderr);
    }
    let r = budget("$10", "stranger@example.com");
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("not listed in gaffer.yaml authors.answers"),
        "{}",
        r.stderr
    );
    assert_eq!(
        git(&state, &["rev-parse", "main"]),
        before,
        "nothing committed"
    );

    let path = "projects/ai-dev/proj-api-service/tasks/jwt-auth/task.yaml";
    let old = git(&state, &["show", &format!("main:{path}")]);
    let r = budget("$10", "you@example.com");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("spent so far: $0.7421"), "{}", r.stdout);
    let new = git(&state, &["show", &format!("main:{path}")]);
    assert!(new.contains("budget: {task: \"$10.00\"}"), "{new}");
    // Everything else in the person's file is as it was.
    assert_eq!(
        new.lines()
            .filter(|l| !l.starts_with("budget:"))
            .collect::<Vec<_>>(),
        old.lines()
            .filter(|l| !l.starts_with("budget:"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        git(&state, &["log", "-1", "--format=%ae", "main"]),
        "you@example.com"
    );
}
