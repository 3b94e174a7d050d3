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
        Self::build(projects, "at-deadline", settings, agent_extra)
    }

    /// Like [`PodLab::new`], with questions going on `cont` (`immediately`, `at-deadline`).
    fn build(projects: &[&str], cont: &str, settings: &str, agent_extra: &str) -> Self {
        let settings = if settings.starts_with("builders:") {
            settings.to_string()
        } else {
            format!("builders: {{image: ghcr.io/example/gaffer:test}}\n{settings}")
        };
        let mut lab = Lab::build(projects, "1h", cont, &settings);
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
    let pl = PodLab::new(
        &["web-api"],
        "builders: {image: ghcr.io/example/gaffer:test, \
         terminal_link: \"https://term.example.com/?ns={{ namespace }}&pod={{ pod }}\"}\n",
        "",
    );
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
    assert!(
        st.links.iter().any(|l| l.name == "terminal"
            && l.url == "https://term.example.com/?ns=demo-web-api-lab&pod=gaffer-builder-0"),
        "{:?}",
        st.links
    );

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

/// `GET path` of the OpenCode server in project `name`'s builder pod, as gaffer would.
fn opencode_get(pl: &PodLab, name: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let pod = pl
        .fake
        .get("v1", "pods", &ns(name), "gaffer-builder-0")
        .expect("a builder pod");
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let password = gaffer::agent::opencode::password_of(
        &pl.lab.data.join("opencode"),
        &format!("demo-{name}"),
    )
    .unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("opencode:{password}"));
    let mut s = std::net::TcpStream::connect((ip.as_str(), 4096)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    // Chunked or not, the JSON is the part between the first `[`/`{` and the last.
    let start = body.find(['[', '{']).unwrap_or(0);
    let end = body.rfind([']', '}']).map_or(body.len(), |e| e + 1);
    serde_json::from_str(&body[start..end]).unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_builder_pod_deleted_mid_turn_comes_back_on_its_volume_and_the_turn_goes_on_once() {
    let pl = PodLab::new(&["web-api"], "", "");
    let key = "Token fix pod deleted";
    let mut steps = fix_steps("gamma");
    // OpenCode's pod is deleted while it waits for the model in this step.
    steps.insert(
        2,
        Step::tool(
            "write",
            json!({"filePath": "repos/web-api/app/notes-gamma.txt", "content": "after restart\n"}),
        )
        .held(),
    );
    pl.lab.add_task("web-api", "gamma", key, steps);
    let _d = pl.lab.daemon();
    pl.lab
        .wait_llm(180, "the held step", |log| log.iter().any(|l| l.held));
    let before = pl.pod_uid("web-api").unwrap();
    pl.fake
        .delete("v1", "pods", &ns("web-api"), "gaffer-builder-0");

    let t = "demo/web-api/gamma";
    let snap = pl.lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, t) == Some(Phase::Promoted)
    });
    let after = pl.pod_uid("web-api").unwrap();
    assert_ne!(before, after, "the StatefulSet made the pod again");
    // The same session, continued with one prompt saying what happened.
    let st = status_of(&snap, t).unwrap();
    let agent = st.agent.unwrap();
    assert_eq!(
        agent
            .prompts_sent
            .iter()
            .filter(|p| p.starts_with("resume-"))
            .count(),
        1,
        "{:?}",
        agent.prompts_sent
    );
    assert_eq!(
        step_counts(&pl.lab.llm, key),
        BTreeMap::from([(0, 1), (1, 1), (2, 2), (3, 1), (4, 1)]),
        "only the cut-off step was asked again"
    );
    assert_eq!(
        crate::test_opencode::user_messages_with(&pl.lab.llm, key, "# Task: "),
        1
    );
    assert_eq!(
        crate::test_opencode::user_messages_with(&pl.lab.llm, key, "was restarted"),
        1
    );
    // The work is on the volume that outlived the pod.
    assert_eq!(
        crate::common::git(
            &pl.volume("web-api").join("demo-web-api/repos/web-api"),
            &["show", "gaffer/gamma:app/notes-gamma.txt"]
        ),
        "after restart"
    );
}

#[test]
fn an_idle_builder_pod_is_suspended_and_a_retry_starts_it_again_on_the_same_session() {
    let pl = PodLab::new(&["web-api"], "", "  pod: {idle_suspend: 2s}\n");
    let key = "Token fix suspended";
    let mut steps = fix_steps("zeta");
    steps[1] = steps[1].clone().failing_once(400);
    pl.lab.add_task("web-api", "zeta", key, steps);
    let d = pl.lab.daemon();
    let t = "demo/web-api/zeta";
    let snap = pl.lab.wait_until(180, "the task failed", |s| {
        phase_of(s, t) == Some(Phase::Failed)
    });
    let session = status_of(&snap, t)
        .unwrap()
        .agent
        .unwrap()
        .session_id
        .unwrap();
    let before = pl.pod_uid("web-api").unwrap();

    // Nothing active for 2 s: scaled to zero, the pod goes, the volume stays.
    pl.wait(60, "the builder suspended", || {
        pl.pod_uid("web-api").is_none()
    });
    let sts = pl
        .fake
        .get("apps/v1", "statefulsets", &ns("web-api"), "gaffer-builder")
        .unwrap();
    assert_eq!(sts["spec"]["replicas"], 0);
    assert!(pl.lab.daemon_log().contains("idle builder stopped"));
    assert!(
        pl.volume("web-api")
            .join("home/.local/share/opencode")
            .is_dir()
    );
    drop(d);

    // A retry (after a restart of gaffer, too) needs the builder: started again, and the
    // session goes on where it stopped.
    let _d = pl.lab.daemon();
    commit_to_bare(
        &pl.lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/zeta/task.yaml",
            "title: Token fix suspended\nretry: 1\n",
        )],
        "retry",
    );
    let snap = pl.lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, t) == Some(Phase::Promoted)
    });
    assert_ne!(pl.pod_uid("web-api"), Some(before), "a new pod");
    let st = status_of(&snap, t).unwrap();
    assert_eq!(
        st.agent.unwrap().session_id.unwrap(),
        session,
        "the same session"
    );
    assert_eq!(
        step_counts(&pl.lab.llm, key),
        BTreeMap::from([(0, 1), (1, 2), (2, 1), (3, 1)])
    );
    assert_eq!(
        crate::test_opencode::user_messages_with(&pl.lab.llm, key, "# Task: "),
        1
    );
    let messages = opencode_get(&pl, "web-api", &format!("/session/{session}/message"));
    assert!(
        messages.as_array().is_some_and(|m| m.len() >= 4),
        "the session's history survived the pod: {messages}"
    );
}

/// Whether NetworkPolicy `np` lets a pod with `labels` in a namespace with `ns_labels` in
/// on `port` (the subset gaffer writes: one rule, peers of a namespace and a pod selector
/// together).
fn admits(
    np: &serde_json::Value,
    ns_labels: &serde_json::Value,
    labels: &serde_json::Value,
    port: u16,
) -> bool {
    let matches = |sel: &serde_json::Value, l: &serde_json::Value| {
        sel["matchLabels"]
            .as_object()
            .is_none_or(|m| m.iter().all(|(k, v)| l.get(k) == Some(v)))
    };
    np["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .any(|rule| {
            let port_ok = rule["ports"]
                .as_array()
                .is_none_or(|ps| ps.iter().any(|p| p["port"] == port));
            let peer_ok = rule["from"].as_array().unwrap().iter().any(|peer| {
                matches(&peer["namespaceSelector"], ns_labels)
                    && matches(&peer["podSelector"], labels)
            });
            port_ok && peer_ok
        })
}

#[test]
fn two_projects_get_two_builder_pods_that_share_nothing() {
    let pl = PodLab::new(&["web-api", "other"], "", "");
    pl.lab.add_task(
        "web-api",
        "alpha",
        "Token fix pod alpha",
        fix_steps("alpha"),
    );
    pl.lab
        .add_task("other", "beta", "Token fix pod beta", fix_steps("beta"));
    let _d = pl.lab.daemon();
    let snap = pl.lab.wait_until(300, "both tasks promoted", |s| {
        phase_of(s, "demo/web-api/alpha") == Some(Phase::Promoted)
            && phase_of(s, "demo/other/beta") == Some(Phase::Promoted)
    });
    // Two pods, two volumes, each with its own project's work only.
    let (a, b) = (pl.volume("web-api"), pl.volume("other"));
    assert_ne!(a, b);
    assert!(a.join("demo-web-api/repos/web-api/.git").exists());
    assert!(!a.join("demo-other").exists());
    assert!(b.join("demo-other/repos/web-api/.git").exists());
    assert!(!b.join("demo-web-api").exists());
    let sa = status_of(&snap, "demo/web-api/alpha")
        .unwrap()
        .agent
        .unwrap();
    let sb = status_of(&snap, "demo/other/beta").unwrap().agent.unwrap();
    assert_ne!(sa.session_id, sb.session_id);

    // Only gaffer's reconcilers reach a builder: not a builder of another project, not
    // anything in its own namespace (the project's own lab apps).
    let gaffer_ns = json!({"kubernetes.io/metadata.name": "gaffer"});
    let reconciler = json!({"app.kubernetes.io/name": "gaffer-reconciler"});
    let builder = json!({"app.kubernetes.io/name": "gaffer-builder"});
    for name in ["web-api", "other"] {
        let np = pl
            .fake
            .get(
                "networking.k8s.io/v1",
                "networkpolicies",
                &ns(name),
                "gaffer-builder",
            )
            .unwrap();
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "gaffer-builder"})
        );
        assert!(admits(&np, &gaffer_ns, &reconciler, 4096));
        assert!(admits(&np, &gaffer_ns, &reconciler, 4097));
        assert!(!admits(&np, &gaffer_ns, &reconciler, 22));
        let third = json!({"kubernetes.io/metadata.name": "demo-third-lab"});
        assert!(!admits(&np, &third, &builder, 4096));
        let own = json!({"kubernetes.io/metadata.name": ns(name)});
        assert!(!admits(&np, &own, &json!({"app": "web"}), 4097));
    }

    // A builder's service account reads its own namespace, not another's.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
        let admin =
            kube::Client::try_from(crate::common::kube::config_of(&pl.kubeconfig).await).unwrap();
        let token = kube::Api::<ServiceAccount>::namespaced(admin, &ns("web-api"))
            .create_token_request(
                "gaffer-builder",
                &Default::default(),
                &k8s_openapi::api::authentication::v1::TokenRequest::default(),
            )
            .await
            .unwrap()
            .status
            .unwrap()
            .token;
        let kc = pl.lab.tmp.path().join("builder.kubeconfig");
        pl.fake.write_kubeconfig_for(&kc, &token);
        let client = kube::Client::try_from(crate::common::kube::config_of(&kc).await).unwrap();
        kube::Api::<Pod>::namespaced(client.clone(), &ns("web-api"))
            .list(&Default::default())
            .await
            .expect("its own namespace");
        for kind in ["pods", "secrets"] {
            let err = match kind {
                "pods" => kube::Api::<Pod>::namespaced(client.clone(), &ns("other"))
                    .list(&Default::default())
                    .await
                    .map(|_| ()),
                _ => kube::Api::<Secret>::namespaced(client.clone(), &ns("other"))
                    .list(&Default::default())
                    .await
                    .map(|_| ()),
            };
            assert!(
                matches!(err, Err(kube::Error::Api(ref e)) if e.code == 403),
                "{kind} of another project: {err:?}"
            );
        }
    });
}

#[test]
fn gaffer_killed_while_the_builder_pod_starts_makes_no_second_pod_or_session() {
    let pl = PodLab::new(&["web-api"], "", "");
    let key = "Token fix kill";
    pl.lab.add_task("web-api", "kappa", key, fix_steps("kappa"));
    let d = pl.lab.daemon();
    // The pod exists (its containers are starting): gaffer goes down hard.
    pl.wait(120, "the builder pod", || pl.pod_uid("web-api").is_some());
    drop(d); // SIGKILL
    let first = pl.pod_uid("web-api").unwrap();
    let _d = pl.lab.daemon();
    let t = "demo/web-api/kappa";
    let snap = pl.lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, t) == Some(Phase::Promoted)
    });
    assert_eq!(
        pl.pod_uid("web-api"),
        Some(first),
        "the same pod throughout"
    );
    assert_eq!(
        pl.fake.names("v1", "pods", &ns("web-api")),
        ["gaffer-builder-0"]
    );
    let session = status_of(&snap, t)
        .unwrap()
        .agent
        .unwrap()
        .session_id
        .unwrap();
    let sessions = opencode_get(&pl, "web-api", "/session");
    let ours: Vec<_> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["title"]
                .as_str()
                .is_some_and(|t| t.contains("demo/web-api/kappa"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{sessions:#}");
    assert_eq!(ours[0]["id"], json!(session));
    assert_eq!(
        step_counts(&pl.lab.llm, key),
        BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1)])
    );
}

/// The builder pod's objects are valid Kubernetes objects (kubernetes-validate 1.33).
#[test]
fn the_builder_pods_objects_validate() {
    let pod = gaffer::agent::pod::BuilderPod {
        project: gaffer::names::ProjectRef::parse("demo/web-api").unwrap(),
        image: "ghcr.io/example/gaffer:1".into(),
        password: "s3cret".into(),
        running: true,
        storage: "1Gi".into(),
        resources: json!({"requests": {"cpu": "100m", "memory": "256Mi"}}),
        gaffer_namespace: "gaffer".into(),
        opencode_config: Some("{}".into()),
        git_credentials: Some("https://x:y@github.com\n".into()),
        env: [("LAB_NAMESPACE".to_string(), "demo-web-api-lab".to_string())].into(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("builder.json");
    std::fs::write(
        &file,
        pod.objects()
            .iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n"),
    )
    .unwrap();
    let checked = crate::common::kubernetes_validate(&file);
    assert!(checked.is_ok(), "{checked:?}");
}

/// The sidecar's seam without a cluster: `gaffer workspace serve`'s server in-process, its
/// client as gaffer uses it.
#[derive(Debug)]
struct Local(String, std::sync::Mutex<PathBuf>);

#[async_trait::async_trait]
impl gaffer::workspace::remote::Sidecar for Local {
    async fn locate(
        &self,
        _p: &gaffer::names::ProjectRef,
    ) -> Result<(String, String), gaffer::workspace::WorkspaceError> {
        Ok((self.0.clone(), "right-token".into()))
    }
    fn set_root(&self, _p: &gaffer::names::ProjectRef, root: PathBuf) {
        *self.1.lock().unwrap() = root;
    }
    fn root(&self, _p: &gaffer::names::ProjectRef) -> PathBuf {
        self.1.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_sidecar_serves_its_token_holder_only_and_validates_names() {
    use gaffer::workspace::Workspace as _;
    use gaffer::workspace::remote::{Op, RemoteWorkspace};
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origins/web-api.git");
    gaffer::cli::demo::bare_repo_with(&origin, &gaffer::cli::demo::sample_app(), "web-api")
        .unwrap();
    let pod_root = tmp.path().join("volume");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(gaffer::workspace::remote::serve(
        pod_root.clone(),
        "right-token".into(),
        listener,
    ));
    let spec: gaffer::state::spec::ProjectSpec = gaffer::state::yaml::parse(
        format!(
            "repos:\n  - {{name: web-api, url: {}, base: main}}\n",
            json!(origin.display().to_string())
        )
        .as_bytes(),
    )
    .unwrap();
    let task = gaffer::names::TaskRef::parse("demo/web-api/alpha").unwrap();

    // The seam, through the sidecar: the worktree is made on the pod's volume, work is
    // checkpointed there, and the branch comes over to gaffer's mirror and copy.
    let remote = RemoteWorkspace::new(
        std::sync::Arc::new(Local(url.clone(), Default::default())),
        tmp.path().join("gaffer"),
    );
    let (r, t, sp) = (remote.clone(), task.clone(), spec.clone());
    let (repos, copy) = tokio::task::spawn_blocking(move || {
        let repos = r.prepare(&t, &sp).unwrap();
        let wt = pod_root.join("demo-web-api/repos/web-api");
        std::fs::write(wt.join("app/fixed-alpha.txt"), "lifetime: 15m\n").unwrap();
        let commits = r.checkpoint(&t, &sp, "edited").unwrap();
        assert_eq!(commits.len(), 1);
        assert_eq!(
            r.builder_dir(&t.project, &sp),
            pod_root.join("demo-web-api")
        );
        let copy = r.sync_local(&t, &sp).unwrap();
        (repos, copy)
    })
    .await
    .unwrap();
    assert_eq!(repos.values().next().unwrap().branch, "gaffer/alpha");
    let copied = copy.join("repos/web-api");
    assert_eq!(
        std::fs::read_to_string(copied.join("app/fixed-alpha.txt")).unwrap(),
        "lifetime: 15m\n"
    );
    assert_eq!(
        crate::common::git(&copied, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "gaffer/alpha"
    );
    let mirror = remote.mirror_dir(&spec.repos[0].url);
    assert_eq!(
        crate::common::git(&mirror, &["show", "gaffer/alpha:app/fixed-alpha.txt"]),
        "lifetime: 15m"
    );

    // Anyone else is refused before anything is read; names are checked again on arrival.
    let post = |token: &str, body: serde_json::Value| {
        let (addr, token) = (
            url.trim_start_matches("http://").to_string(),
            token.to_string(),
        );
        async move {
            tokio::task::spawn_blocking(move || {
                use std::io::{Read, Write};
                let body = body.to_string();
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                write!(
                    s,
                    "POST /v1/op HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                // The body, then the status code, as `curl -w` would print them.
                let code = out.split_whitespace().nth(1).unwrap_or("").to_string();
                let rest = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
                format!("{rest}\n{code}")
            })
            .await
            .unwrap()
        }
    };
    let root = serde_json::to_value(Op::Root).unwrap();
    assert!(post("wrong", root.clone()).await.ends_with("401"));
    assert!(post("right-token", root).await.ends_with("200"));
    let bad = post(
        "right-token",
        json!({"op": "heads", "task": "demo/web-api/../../etc", "spec": ""}),
    )
    .await;
    assert!(bad.contains("error") && bad.ends_with("200"), "{bad}");
    let bad = post(
        "right-token",
        json!({"op": "bundle", "url": spec.repos[0].url, "branch": "main", "have": null}),
    )
    .await;
    assert!(bad.contains("not a task branch"), "{bad}");
    server.abort();
}

#[test]
fn a_different_answer_sets_the_pods_provisional_work_aside_on_its_volume() {
    let pl = PodLab::build(&["web-api"], "immediately", "", "");
    let key = "Signing override in a pod";
    let ask = Step::tool(
        "question",
        json!({"questions": [{"question": "Which signing?", "header": "Signing", "multiple": false,
            "options": [{"label": "RS256 (Recommended)", "description": "keys"},
                        {"label": "HS256", "description": "secret"}]}]}),
    );
    let write = |path: &str, content: &str| {
        Step::tool("write", json!({"filePath": path, "content": content}))
    };
    let steps = vec![
        ask,
        write("repos/web-api/app/signing.txt", "RS256\n"),
        write("repos/web-api/app/fixed-sig.txt", "more work\n").held(),
        Step::text("DONE: signing configured"),
    ];
    pl.lab.add_task("web-api", "sig", key, steps);
    let _d = pl.lab.daemon();
    pl.lab
        .wait_llm(180, "the held step", |log| log.iter().any(|l| l.held));
    let t = "demo/web-api/sig";
    pl.lab
        .wait_until(60, "the edit after the question checkpointed", |s| {
            milestones(s, t)
                .iter()
                .any(|(_, text, _)| text.contains("edited repos/web-api/app/signing.txt"))
        });
    let answer = format!("choice: HS256\nby: {}\n", gaffer::cli::demo::PERSON);
    crate::common::commit_as(
        &pl.lab.state,
        gaffer::cli::demo::PERSON,
        &[(
            "projects/demo/web-api/tasks/sig/answers/q-001.yaml",
            answer.as_str(),
        )],
        "answer",
    );
    pl.lab.wait_until(90, "the work set aside", |s| {
        milestones(s, t)
            .iter()
            .any(|(_, text, _)| text.starts_with("↩ q-001"))
    });
    // On the pod's volume: the worktree back at the question point, the provisional work
    // kept on its own branch.
    let wt = pl.volume("web-api").join("demo-web-api/repos/web-api");
    assert_eq!(
        crate::common::git(&wt, &["branch", "--show-current"]),
        "gaffer/sig"
    );
    assert!(!wt.join("app/signing.txt").exists());
    assert_eq!(
        crate::common::git(
            &wt,
            &["show", "gaffer-provisional/sig/q-001:app/signing.txt"]
        ),
        "RS256"
    );
    pl.lab
        .wait_until(180, "promoted", |s| phase_of(s, t) == Some(Phase::Promoted));
    assert_eq!(
        crate::test_opencode::user_messages_with(&pl.lab.llm, key, "A person answered"),
        1
    );
    // What was merged is the work done for the person's answer.
    let origin = pl.lab.tmp.path().join("origins/web-api.git");
    assert!(
        crate::common::git(&origin, &["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .all(|f| f != "app/signing.txt")
    );
}
