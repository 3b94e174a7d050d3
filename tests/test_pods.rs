//! Builders as pods (`agent.host: pod`): `gaffer reconcile` as a process, the fake
//! Kubernetes API with its test kubelet running the builder pod's containers as local
//! processes — the real OpenCode (against the scripted LLM) and gaffer's own workspace
//! sidecar — on a volume that outlives the pod; real git throughout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gaffer::state::status::{HostKind, Phase};
use serde_json::json;

use crate::common::commit_to_bare;
use crate::common::kube::FakeKube;
use crate::common::llm::Step;
use crate::test_opencode::{Lab, fix_steps, milestones, phase_of, status_of, step_counts};

/// The namespace of project `demo/<name>`.
fn ns(name: &str) -> String {
    format!("demo-{name}-lab")
}

/// The volume of a project's builder pod.
const CLAIM: &str = "workspace-gaffer-builder-0";

/// A lab whose projects' builders are pods in the fake cluster.
struct PodLab {
    lab: Lab,
    fake: FakeKube,
    kubeconfig: PathBuf,
}

/// What the builder pods' "image" has: OpenCode, gaffer (the workspace sidecar), git.
fn image_path() -> std::ffi::OsString {
    let opencode = crate::common::opencode::binary();
    let gaffer = PathBuf::from(env!("CARGO_BIN_EXE_gaffer"));
    let mut dirs = vec![
        opencode.parent().unwrap().to_path_buf(),
        gaffer.parent().unwrap().to_path_buf(),
    ];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

impl PodLab {
    /// `projects` (under `demo/`) with `agent.host: pod` and `agent_extra` lines under
    /// `agent:`, `settings` appended to gaffer.yaml.
    fn new(projects: &[&str], settings: &str, agent_extra: &str) -> Self {
        let settings = format!("builders: {{image: ghcr.io/example/gaffer:test}}\n{settings}");
        let mut lab = Lab::with_settings(projects, &settings);
        let fake = FakeKube::with_kubelet(image_path());
        let kubeconfig = lab.tmp.path().join("admin.kubeconfig");
        fake.write_kubeconfig(&kubeconfig);
        lab.lab_mode = "cluster";
        lab.env
            .push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        for name in projects {
            let origin = lab.tmp.path().join(format!("origins/{name}.git"));
            let project = format!(
                "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
                 agent:\n  runtime: opencode\n  host: pod\n  model: scripted/m\n  permissions:\n    - {{permission: \"*\", action: allow}}\n{agent_extra}\
                 lab: {{overlay: web-api/deploy, test: sh tests/run-tests.sh, test_without_deploy: true, mode: render-only}}\n\
                 forge: {{kind: local, merge_method: merge}}\n",
                json!(origin.display().to_string())
            );
            let path = format!("projects/demo/{name}/project.yaml");
            commit_to_bare(
                &lab.state,
                "main",
                &[(path.as_str(), project.as_str())],
                "pod builder",
            );
        }
        PodLab {
            lab,
            fake,
            kubeconfig,
        }
    }

    /// The builder pod's volume of project `name`.
    fn volume(&self, name: &str) -> PathBuf {
        self.fake.claim_dir(&ns(name), CLAIM)
    }

    /// The builder pod's uid, while it exists.
    fn pod_uid(&self, name: &str) -> Option<String> {
        self.fake
            .get("v1", "pods", &ns(name), "gaffer-builder-0")
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
    }

    /// Waits until `f` holds, reporting the lab's state when it does not.
    fn wait(&self, secs: u64, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}\npod log: {:?}\nsidecar log: {:?}",
                self.lab.report(&self.lab.snapshot()),
                self.fake
                    .log(&ns("web-api"), "gaffer-builder-0", "opencode"),
                self.fake
                    .log(&ns("web-api"), "gaffer-builder-0", "workspace"),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The steps of a task that asks a question before it writes the fix.
fn asking_steps(task: &str) -> Vec<Step> {
    let mut steps = fix_steps(task);
    steps.insert(
        1,
        Step::tool(
            "question",
            json!({"questions": [{"question": "Which token lifetime?", "header": "Lifetime",
                "multiple": false, "options": [
                    {"label": "15 minutes (Recommended)", "description": "Short"},
                    {"label": "1 hour", "description": "Long"}]}]}),
        ),
    );
    steps
}

#[test]
fn a_task_runs_its_whole_lifecycle_in_a_builder_pod_with_the_workspace_on_its_volume() {
    let pl = PodLab::new(&["web-api"], "", "");
    let key = "Token fix in a pod";
    pl.lab
        .add_task("web-api", "alpha", key, asking_steps("alpha"));
    let _d = pl.lab.daemon();

    // The question, answered by a commit like a person's.
    let t = "demo/web-api/alpha";
    pl.wait(90, "the builder's question", || {
        pl.lab
            .snapshot()
            .task(&crate::test_opencode::task(t))
            .is_some_and(|e| !e.questions.is_empty())
    });
    let answer = format!("choice: \"1 hour\"\nby: {}\n", gaffer::cli::demo::PERSON);
    crate::common::commit_as(
        &pl.lab.state,
        gaffer::cli::demo::PERSON,
        &[(
            "projects/demo/web-api/tasks/alpha/answers/q-001.yaml",
            answer.as_str(),
        )],
        "answer",
    );
    let snap = pl.lab.wait_until(300, "the task promoted", |s| {
        phase_of(s, t) == Some(Phase::Promoted)
    });

    // It ran in the pod: status says so and how to attach.
    let st = status_of(&snap, t).unwrap();
    let agent = st.agent.clone().unwrap();
    assert_eq!(agent.host, Some(HostKind::Pod));
    assert_eq!(
        agent.attach.as_deref(),
        Some(
            "kubectl exec -it -n demo-web-api-lab gaffer-builder-0 -c opencode -- opencode attach http://127.0.0.1:4096"
        )
    );
    assert!(agent.session_id.as_deref().unwrap().starts_with("ses"));

    // The worktrees are on the pod's volume, none on gaffer's disk; OpenCode's data too.
    let volume = pl.volume("web-api");
    let wt = volume.join("demo-web-api/repos/web-api");
    assert!(
        wt.join(".git").exists(),
        "no worktree in {}",
        volume.display()
    );
    assert!(
        !pl.lab
            .builders
            .join("demo-web-api/repos/web-api/.git")
            .exists(),
        "a worktree on gaffer's disk"
    );
    assert!(volume.join("home/.local/share/opencode").is_dir());
    // The edit's checkpoint, named relative to the workspace as the pod sees it.
    let ms = milestones(&snap, t);
    let edit = ms
        .iter()
        .find(|(_, text, _)| text.contains("📝 edited repos/web-api/app/fixed-alpha.txt"))
        .unwrap_or_else(|| panic!("no edit milestone in {ms:#?}"));
    let commit = edit.2.clone().expect("the edit names its checkpoint");
    assert_eq!(
        crate::common::git(&wt, &["show", &format!("{commit}:app/fixed-alpha.txt")]),
        "lifetime: 15m"
    );
    // The lab tests ran on gaffer's copy of the worktree's files.
    assert!(
        pl.lab
            .builders
            .join(".copies/demo-web-api/repos/web-api/app/fixed-alpha.txt")
            .is_file()
    );
    // The change was pushed from gaffer's mirror (the branch bundled out of the pod) and
    // merged into the origin.
    let origin = pl.lab.tmp.path().join("origins/web-api.git");
    assert_eq!(
        crate::common::git(&origin, &["show", "main:app/fixed-alpha.txt"]),
        "lifetime: 15m"
    );
    let q = snap
        .task(&crate::test_opencode::task(t))
        .unwrap()
        .questions
        .values()
        .next()
        .cloned()
        .unwrap();
    assert_eq!(q.decision.as_ref().unwrap().choice, ["1 hour"]);
    // Every step reached the model once, the answer among them.
    assert_eq!(
        step_counts(&pl.lab.llm, key),
        BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)])
    );
    assert!(
        pl.lab
            .llm
            .log_of(key)
            .iter()
            .any(|l| l.tool_texts.iter().any(|r| r.contains("1 hour"))),
        "the answer reached the model"
    );

    // The pod's objects: only gaffer's reconcilers may reach it; the password stays in the
    // cluster's Secret, never in the state repository.
    let np = pl
        .fake
        .get(
            "networking.k8s.io/v1",
            "networkpolicies",
            &ns("web-api"),
            "gaffer-builder",
        )
        .unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "gaffer-reconciler"
    );
    let password =
        gaffer::agent::opencode::password_of(&pl.lab.data.join("opencode"), "demo-web-api")
            .unwrap();
    assert!(!crate::common::git(&pl.lab.state, &["log", "-p", "main"]).contains(&password));
    let _ = &pl.kubeconfig;
}

#[test]
fn a_pod_project_with_no_cluster_waits_with_a_condition_and_nothing_else_happens() {
    let mut lab = Lab::with_settings(&["web-api"], "builders: {host: pod, image: x/gaffer:1}\n");
    lab.lab_mode = "render-only";
    lab.add_task("web-api", "alpha", "Token fix nowhere", fix_steps("alpha"));
    let _d = lab.daemon();
    let t = "demo/web-api/alpha";
    let snap = lab.wait_until(120, "the condition", |s| {
        status_of(s, t).is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "AgentReady" && c.reason == "NoCluster")
        })
    });
    let st = status_of(&snap, t).unwrap();
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "AgentReady")
        .unwrap();
    assert!(c.message.contains("agent.host: pod"), "{c:?}");
    assert_eq!(st.phase, Phase::Preparing);
    // Nothing else: no workspace, no model request.
    assert!(!lab.builders.join("demo-web-api/repos").exists());
    assert!(lab.llm.log().is_empty());
}
