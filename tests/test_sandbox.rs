//! The builder cannot act as the person: the real OpenCode, sandboxed with bubblewrap, whose
//! scripted model plays a hostile builder with `bash` tool calls. Its shell must find none of
//! gaffer's or the person's secrets — not in its environment, not under `/proc/*/environ`,
//! not in gaffer's data dir, not in the HOME gaffer runs with — and must not reach the state
//! repository or push to the project's origin.

use serde_json::json;

use crate::common::llm::Step;
use crate::test_opencode::{Lab, phase_of, status_of};

const GITHUB_TOKEN: &str = "ghp_SECRETSECRETSECRET0001";
const SLACK_TOKEN: &str = "xoxb-SECRET-SLACK-0002";
const SSH_KEY: &str = "PERSONAL-PRIVATE-KEY-0003";

fn bash(command: String) -> Step {
    Step::tool(
        "bash",
        json!({"command": command, "description": "look around"}),
    )
}

#[test]
fn a_hostile_builder_finds_no_secrets_and_cannot_reach_the_state_repo_or_push() {
    crate::common::ensure_bwrap();
    let lab = Lab::new(&["web-api"]);
    // The HOME gaffer runs with holds the person's key; gaffer's data dir a token file.
    let person_home = lab.tmp.path().join("person-home");
    std::fs::create_dir_all(person_home.join(".ssh")).unwrap();
    std::fs::write(person_home.join(".ssh/id_ed25519"), SSH_KEY).unwrap();
    std::fs::create_dir_all(&lab.data).unwrap();
    std::fs::write(lab.data.join("github-token"), GITHUB_TOKEN).unwrap();
    let state = lab.state.display().to_string();
    let data = lab.data.display().to_string();
    let origin = lab.tmp.path().join("origins/web-api.git");
    let origin_main = crate::common::git(&origin, &["rev-parse", "main"]);
    let abs_file = lab
        .builders
        .join("demo-web-api/repos/web-api/app/absolute.txt");
    let steps = vec![
        bash("env".into()),
        bash("cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c SECRET; ls /proc | grep -c '^[0-9]'".into()),
        bash(format!("ls {data} 2>&1; cat {data}/github-token {data}/opencode/*.env 2>&1")),
        bash(format!("cat {}/.ssh/id_ed25519 2>&1; cat ~/.ssh/id_ed25519 2>&1", person_home.display())),
        bash(format!("git -C {state} log -1 2>&1; echo forged > {state}/forged 2>&1; ls {state} 2>&1")),
        bash("cd repos/web-api && git commit --allow-empty -qm hostile && git push origin HEAD:main 2>&1; echo pushed=$?".into()),
        // OpenCode names files by absolute path, as the real model does.
        Step::tool(
            "write",
            json!({"filePath": abs_file.display().to_string(), "content": "x\n"}),
        ),
        Step::text("Looked around.\nDONE: looked around"),
    ];
    lab.add_task("web-api", "nosy", "Look around", steps);
    let _d = lab.daemon_env(&[
        ("GITHUB_TOKEN", GITHUB_TOKEN),
        ("SLACK_BOT_TOKEN", SLACK_TOKEN),
        ("HOME", person_home.to_str().unwrap()),
        ("SSH_AUTH_SOCK", "/tmp/agent.sock-SECRET"),
    ]);
    lab.wait_llm(120, "every hostile command's output", |log| {
        log.iter()
            .any(|l| l.key.as_deref() == Some("Look around") && l.step >= 7)
    });
    let outputs: Vec<String> = lab
        .llm
        .log_of("Look around")
        .into_iter()
        .flat_map(|l| l.tool_texts)
        .collect();
    let all = outputs.join("\n---\n");
    assert!(all.contains("PATH="), "the env command ran: {all}");
    for secret in [
        GITHUB_TOKEN,
        SLACK_TOKEN,
        SSH_KEY,
        "SSH_AUTH_SOCK",
        "SECRET",
    ] {
        assert!(!all.contains(secret), "the builder saw {secret}:\n{all}");
    }
    assert!(all.contains("No such file or directory"), "{all}");
    // Its own PID namespace: a handful of processes, not the machine's.
    let procs = outputs
        .iter()
        .find_map(|o| {
            let mut lines = o.lines();
            (lines.next()? == "0").then(|| lines.next()?.trim().parse::<u32>().ok())?
        })
        .unwrap_or_else(|| panic!("no /proc count in:\n{all}"));
    assert!(procs < 20, "{procs} processes visible:\n{all}");
    assert!(
        !lab.state.join("forged").exists(),
        "wrote to the state repo"
    );
    assert!(
        all.contains("pushed=") && !all.contains("pushed=0"),
        "{all}"
    );
    assert_eq!(
        crate::common::git(&origin, &["rev-parse", "main"]),
        origin_main,
        "the builder pushed to the origin"
    );
    lab.wait_until(60, "the builder's sandbox on the task's status", |s| {
        phase_of(s, "demo/web-api/nosy").is_some()
            && status_of(s, "demo/web-api/nosy")
                .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Sandboxed"))
    });
    // host_paths_do_not_leak_into_history: the edit is shown relative to the workspace.
    let snap = lab.wait_until(60, "the edit's milestone", |s| {
        crate::test_opencode::milestones(s, "demo/web-api/nosy")
            .iter()
            .any(|(_, text, _)| text.contains("absolute.txt"))
    });
    let builders = lab.builders.display().to_string();
    for (_, text, _) in crate::test_opencode::milestones(&snap, "demo/web-api/nosy") {
        assert!(
            !text.contains(&builders),
            "a host path in a milestone: {text}"
        );
    }
    assert!(
        crate::test_opencode::milestones(&snap, "demo/web-api/nosy")
            .iter()
            .any(|(_, text, _)| text == "📝 edited repos/web-api/app/absolute.txt"),
        "{:?}",
        crate::test_opencode::milestones(&snap, "demo/web-api/nosy")
    );
    let log = crate::common::git(
        &lab.builders.join("demo-web-api/repos/web-api"),
        &["log", "--format=%s", "gaffer/nosy"],
    );
    assert!(
        !log.contains(&builders),
        "a host path in a commit message: {log}"
    );
    assert!(
        log.contains("edited repos/web-api/app/absolute.txt"),
        "{log}"
    );
    let status = status_of(&snap, "demo/web-api/nosy").unwrap();
    let sandboxed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Sandboxed")
        .unwrap();
    assert_eq!(
        (format!("{:?}", sandboxed.status), sandboxed.reason.as_str()),
        ("True".to_string(), "Bwrap")
    );
}

#[test]
fn with_sandbox_none_the_warning_is_in_the_log_and_on_the_task() {
    let lab = Lab::new(&["web-api"]);
    let project = "projects/demo/web-api/project.yaml";
    let text = crate::common::git(&lab.state, &["show", &format!("main:{project}")]);
    let text = text.replace(
        "agent:\n  runtime: opencode\n",
        "agent:\n  runtime: opencode\n  sandbox: none\n",
    );
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(project, text.as_str())],
        "no sandbox",
    );
    lab.add_task(
        "web-api",
        "plain",
        "Plain task",
        crate::test_opencode::fix_steps("plain"),
    );
    let _d = lab.daemon();
    let snap = lab.wait_until(120, "the builder to start", |s| {
        status_of(s, "demo/web-api/plain")
            .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Sandboxed"))
    });
    let status = status_of(&snap, "demo/web-api/plain").unwrap();
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Sandboxed")
        .unwrap();
    assert_eq!(c.reason, "SandboxOff");
    assert!(c.message.contains("unsandboxed"), "{}", c.message);
    assert!(
        lab.daemon_log()
            .contains("agent.sandbox: none: the builder runs unsandboxed"),
        "{}",
        lab.daemon_log()
    );
}
